"""A producer SIGKILLed right after its commit, mid-relay: the next relay sends every
committed row, and the consumer's ledger (written through the inbox) shows each once,
in order per key, though the broker may have delivered some twice."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest

import bus
from tests.conformance.helpers import unique

from .conftest import new_schema
from .helpers import Step, count, query

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300


@pytest.mark.parametrize("adapter", ["rabbitmq", "kafka"])
async def test_killed_mid_relay_the_next_relay_sends_every_committed_row(
    adapter: str, pg_database: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    inbox_store = await new_schema(pg_database)  # the consumer's database, apart
    outbox = f"{pg_url}&lease=2&batch=5"
    topic = unique("crash")
    delivered: list[int] = []
    consumer, raw = bus.Service(unique("g")), bus.Service(unique("raw"))

    @consumer.subscribe(topic, concurrency=1, idempotent=True)
    async def on_step(step: Step, ctx: bus.Context) -> None:
        await ctx.transaction.connection.execute(
            "INSERT INTO ledger (key, seq) VALUES ($1, $2)", step.key, step.seq
        )

    @raw.subscribe(topic)
    async def count_delivery(step: Step) -> None:
        delivered.append(step.seq)

    async with bus.Bus(url, services=[consumer, raw], store=inbox_store) as b:
        async with b.transaction() as tx:
            await tx.connection.execute(
                "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, key TEXT, seq INTEGER)"
            )
        marker = tmp_path / "committed"
        proc = await anyio.open_process(
            [sys.executable, str(Path(__file__).with_name("producer.py")), url, outbox, topic,
             str(ROWS), str(marker)],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            stdout=None,
            stderr=None,
        )  # fmt: skip
        try:
            with anyio.fail_after(30):
                while not marker.exists():
                    assert proc.returncode is None, f"the producer exited: {proc.returncode}"
                    await anyio.sleep(0.005)
                while True:  # kill mid-relay, best while rows are sent but not yet deleted
                    deleted = ROWS - await count(pg_url, "bus_outbox")
                    if deleted and (len(delivered) > deleted or deleted > ROWS // 2):
                        break
                    await anyio.sleep(0.001)
        finally:
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await proc.wait()
        left = await count(pg_url, "bus_outbox")
        assert 0 < left < ROWS, f"killed mid-relay ({left} of {ROWS} rows unsent)"
        async with bus.Bus(url, store=outbox):  # the next relay
            with anyio.fail_after(30):
                while await count(inbox_store, "ledger") < ROWS:
                    await anyio.sleep(0.02)
                while await count(pg_url, "bus_outbox"):
                    await anyio.sleep(0.02)
        await anyio.sleep(0.3)  # a late duplicate would be written now
    ledger = await query(inbox_store, "SELECT key, seq FROM ledger ORDER BY id")
    assert sorted(seq for _, seq in ledger) == list(range(ROWS)), "each row once in effect"
    for key in {k for k, _ in ledger}:
        seqs = [seq for k, seq in ledger if k == key]
        assert seqs == sorted(seqs), f"order of {key} kept"
    assert len(delivered) >= ROWS
    print(f"{adapter}: {left} rows left at the kill; {len(delivered) - ROWS} duplicate deliveries")

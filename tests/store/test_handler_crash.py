"""An idempotent handler whose effects are a database write and a publish, SIGKILLed
inside its transaction, and redelivered to a second process: the write happens once and
the publish once in effect.

The first consumer process handles a stream of messages (four at a time, so others are
in every state when it dies: committed and acked, committed and not yet acked, sent by
its relay and not yet deleted) and hangs inside the transaction of one of them, where it
is SIGKILLed. A second process takes the group over: the killed handler's message runs
again there (its first run's write and publish were rolled back with the connection),
and every message whose transaction had committed but whose ack never reached the broker
is acked unrun. Downstream, a consumer writes what it receives through its own inbox:
its ledger shows each published message once, though the broker may deliver copies."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

import bus
from tests.conformance.helpers import unique

from .conftest import new_schema
from .helpers import Step, count, query

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 24
HANG = 5  # the message whose handler is killed mid-transaction


async def _spawn(args: list[str]) -> Process:
    return await anyio.open_process(
        [sys.executable, str(Path(__file__).with_name("handler_proc.py")), *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=None,
        stderr=None,
    )


async def _wait_file(path: Path, proc: Process) -> None:
    with anyio.fail_after(30):
        while not await anyio.Path(path).exists():
            assert proc.returncode is None, f"the consumer process exited: {proc.returncode}"
            await anyio.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["rabbitmq", "kafka"])
async def test_a_handler_killed_mid_transaction_writes_once_and_publishes_once_in_effect(
    adapter: str, pg_database: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    store = f"{pg_url}&lease=2"  # the handler's database, its inbox and its outbox
    downstream_store = await new_schema(pg_database)
    topic, out, group = unique("hcrash"), unique("hcrash-out"), unique("g")
    await query(pg_url, "CREATE TABLE effects (seq INTEGER, pid INTEGER, attempt INTEGER)")
    delivered: list[int] = []
    downstream, raw = bus.Service(unique("down")), bus.Service(unique("raw"))

    @downstream.subscribe(out, idempotent=True, concurrency=1)
    async def on_out(step: Step, ctx: bus.Context) -> None:
        await ctx.transaction.connection.execute("INSERT INTO ledger (seq) VALUES ($1)", step.seq)

    @raw.subscribe(out)
    async def count_delivery(step: Step) -> None:
        delivered.append(step.seq)

    async with bus.Bus(url, services=[downstream, raw], store=downstream_store) as b:
        async with b.transaction() as tx:
            await tx.connection.execute("CREATE TABLE ledger (seq INTEGER)")
        first_marker = tmp_path / "first"
        first = await _spawn([url, store, topic, out, group, "hang", str(first_marker), str(HANG)])
        try:
            await _wait_file(Path(f"{first_marker}.ready"), first)
            for seq in range(MESSAGES):
                key = f"k{seq % 4}"
                await b.publish(topic, Step(key, seq), key=key)
            await _wait_file(first_marker, first)
            with anyio.fail_after(30):  # others flow past the hung one meanwhile
                while await count(pg_url, "effects") < MESSAGES // 2:
                    await anyio.sleep(0.01)
        finally:
            first.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await first.wait()
        before = [seq for (seq,) in await query(pg_url, "SELECT seq FROM effects")]
        assert HANG not in before, "the killed transaction's write was rolled back"

        second_marker = tmp_path / "second"
        second = await _spawn([url, store, topic, out, group, "finish", str(second_marker), "-1"])
        try:
            await _wait_file(Path(f"{second_marker}.ready"), second)
            with anyio.fail_after(60):
                while (
                    await count(pg_url, "effects") < MESSAGES
                    or await count(downstream_store, "ledger") < MESSAGES
                    or await count(pg_url, "bus_outbox")
                ):
                    assert second.returncode is None, f"it exited: {second.returncode}"
                    await anyio.sleep(0.02)
            await anyio.sleep(0.5)  # a late duplicate would take effect now
        finally:
            second.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await second.wait()
        ledger = sorted(seq for (seq,) in await query(downstream_store, "SELECT seq FROM ledger"))
    effects = await query(pg_url, "SELECT seq, pid, attempt FROM effects ORDER BY seq")
    assert [seq for seq, _, _ in effects] == list(range(MESSAGES)), "each write once"
    rerun = next((pid, attempt) for seq, pid, attempt in effects if seq == HANG)
    assert rerun[0] == second.pid, "the killed handler's message ran again in the second process"
    if adapter == "rabbitmq":  # counts redeliveries: the second run knows it is one
        assert rerun[1] >= 2
    assert ledger == list(range(MESSAGES)), "each publish once in effect"
    assert sorted(set(delivered)) == list(range(MESSAGES))
    assert await count(pg_url, "bus_inbox") == MESSAGES
    print(f"{adapter}: {len(before)} handled before the kill, {len(delivered) - MESSAGES} "
          "duplicate deliveries downstream")  # fmt: skip

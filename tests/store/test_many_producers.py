"""Three producer processes committing to one PostgreSQL outbox at once, each with the
relay every Bus with a store runs, and a fourth relay (in the test's process) that
produces nothing: four relays in two or more processes compete for every producer's
rows, woken by each other's NOTIFY. Nothing is lost, and each key's messages arrive in
the order its producer committed them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

import bus
from tests.conformance.helpers import unique

from .helpers import Step, count

ROOT = Path(__file__).resolve().parents[2]
PRODUCERS, KEYS, PER_KEY = 3, 4, 40


async def _spawn(args: list[str]) -> Process:
    return await anyio.open_process(
        [sys.executable, str(Path(__file__).with_name("keyed_producer.py")), *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=None,
        stderr=None,
    )


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["rabbitmq", "kafka"])
async def test_three_producer_processes_lose_nothing_and_keep_order_per_key(
    adapter: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    topic = unique("producers")
    store = f"{pg_url}&batch=7"  # small rounds: the relays take turns many times
    got: dict[str, list[int]] = {}
    consumer = bus.Service(unique("g"))

    # One queue (RabbitMQ) or partition per key (Kafka), handled one at a time: the order
    # of arrival is the order the relays' sends were confirmed.
    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.setdefault(step.key, []).append(step.seq)

    go = tmp_path / "go"
    results = [tmp_path / f"p{me}.json" for me in range(PRODUCERS)]
    async with bus.Bus(url, services=[consumer]), bus.Bus(url, store=store) as relay_only:
        procs = [
            await _spawn([url, store, topic, str(me), str(KEYS), str(PER_KEY), str(go), str(r)])
            for me, r in enumerate(results)
        ]
        try:
            with anyio.fail_after(60):
                for proc, result in zip(procs, results, strict=True):
                    while not await anyio.Path(f"{result}.ready").exists():
                        assert proc.returncode is None, f"a producer exited: {proc.returncode}"
                        await anyio.sleep(0.01)
                go.write_text("go")  # all commit at once
                for proc in procs:
                    assert await proc.wait() == 0
            total = PRODUCERS * KEYS * PER_KEY
            with anyio.fail_after(30):
                while sum(len(v) for v in got.values()) < total:
                    await anyio.sleep(0.02)
            assert relay_only.relay is not None
            sent = [relay_only.relay.sent]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    assert await count(pg_url, "bus_outbox") == 0
    expected = {f"p{p}-k{k}": list(range(PER_KEY)) for p in range(PRODUCERS) for k in range(KEYS)}
    # At least once allows a copy; the first arrivals are every message, in order per key.
    firsts = {key: list(dict.fromkeys(seqs)) for key, seqs in got.items()}
    assert firsts == expected
    sent += [json.loads(r.read_text())["sent"] for r in results]
    assert sum(sent) >= total and sum(1 for s in sent if s) >= 2, f"relays took part: {sent}"
    print(f"{adapter}: sent by the relay alone, then by each producer's: {sent} "
          f"({KEYS * PER_KEY} committed by each producer); "
          f"{sum(len(v) for v in got.values()) - total} duplicates")  # fmt: skip

"""The database connection cut under load (a loopback proxy in front of the shared
PostgreSQL, which is never stopped): producers keep committing, transactions fail with
``StoreUnavailable`` while it is cut, the relay waits, and once it is back the relay
resumes: every row whose commit returned reaches the consumer, in order per key, and
nothing arrives that was not committed (a commit cut mid-way may have gone either way)."""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
import pytest

import bus
from brokers.tansu import free_port
from bus.store import StoreUnavailable
from tests.brokers.kafka_proxy import Proxy
from tests.conformance.helpers import unique

from .helpers import Step, count

KEYS = 4


@pytest.mark.slow
async def test_the_relay_waits_out_a_cut_connection_and_loses_nothing(
    pg_url: str, memory_url: str
) -> None:
    topic = unique("cut")
    got: dict[str, list[int]] = {}
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)  # so the order of arrival is the order sent
    async def on_step(step: Step) -> None:
        got.setdefault(step.key, []).append(step.seq)

    parts = urlsplit(pg_url)
    proxy = Proxy(free_port(), parts.port or 5432)
    via_proxy = parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
    committed: set[int] = set()
    unknown: set[int] = set()  # cut during the commit: sent or not, never half
    refused = 0
    async with anyio.create_task_group() as tg:
        await proxy.serve(tg)
        store = f"{via_proxy}&connect_timeout=1&poll_interval=0.2&lease=5"
        async with bus.Bus(memory_url, services=[consumer], store=store) as b:
            seq = iter(range(10**6))

            async def producer(me: int, until: anyio.Event) -> None:
                """Commits one row after another, on keys of its own: their ids, and so
                the order the relay keeps, follow its sequence numbers."""
                nonlocal refused
                while not until.is_set():
                    n = next(seq)
                    key = f"p{me}-k{n % KEYS}"
                    try:
                        async with b.transaction() as tx:
                            await tx.publish(topic, Step(key, n), key=key)
                    except StoreUnavailable as exc:
                        if "outcome is unknown" in str(exc):
                            unknown.add(n)
                        refused += 1
                        await anyio.sleep(0.05)
                        continue
                    committed.add(n)

            stop = anyio.Event()
            async with anyio.create_task_group() as producers:
                for me in range(3):
                    producers.start_soon(producer, me, stop)
                with anyio.fail_after(20):
                    while len(committed) < 150:
                        await anyio.sleep(0.01)
                proxy.down()  # mid-load: open connections dropped, new ones refused
                await anyio.sleep(1.5)
                assert refused > 0, "transactions failed while it was cut"
                during = len(committed)
                proxy.up()
                with anyio.fail_after(30):  # the pool reconnects, the load goes on
                    while len(committed) < during + 150:
                        await anyio.sleep(0.01)
                stop.set()
            with anyio.fail_after(30):
                while sum(len(v) for v in got.values()) < len(committed):
                    await anyio.sleep(0.05)
                while await count(pg_url, "bus_outbox"):
                    await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    arrived = {n for seqs in got.values() for n in seqs}
    assert committed <= arrived, f"lost: {sorted(committed - arrived)[:10]}"
    assert arrived <= committed | unknown, "only what was committed arrives"
    for key, seqs in got.items():
        assert seqs == sorted(seqs), f"order per key {key}"
    assert proxy.dropped > 0, "connections were cut"

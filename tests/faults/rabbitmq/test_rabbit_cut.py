"""Cutting every connection of the run in the middle of 10,000 messages loses none.

The cut is ``rabbitmqctl close_connection`` on each connection this test opened (found
by its connection name), which is what ``close_all_connections`` does to them, without
disturbing anyone else using the shared broker.
"""

from __future__ import annotations

import uuid

import anyio
import msgspec

import bus
from tests.brokers.rabbitmq import close_connections, url_for

TOTAL = 10_000


class Numbered(msgspec.Struct):
    n: int


async def test_connections_cut_mid_stream_of_10000_messages_lose_nothing(
    rabbitmq_run: str,
) -> None:
    name = f"{rabbitmq_run}-cut-{uuid.uuid4().hex[:6]}"
    url = url_for(rabbitmq_run, name=name)
    topic = f"cut.{name}"
    ledger: set[int] = set()
    deliveries = 0
    service = bus.Service(f"g-{name}")

    @service.subscribe(topic, concurrency=64)
    async def handle(item: Numbered) -> None:
        nonlocal deliveries
        deliveries += 1
        ledger.add(item.n)

    async def publish_all(publisher: bus.Bus) -> None:
        for start in range(0, TOTAL, 200):  # 200 confirms in flight at a time
            async with anyio.create_task_group() as batch:
                for n in range(start, start + 200):
                    batch.start_soon(publisher.publish, topic, Numbered(n))

    cuts = 0
    async with (
        bus.Bus(url, services=[service]),
        bus.Bus(url) as publisher,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(publish_all, publisher)
        with anyio.fail_after(90):
            while len(ledger) < TOTAL // 3:
                await anyio.sleep(0.01)
            cuts = await anyio.to_thread.run_sync(close_connections, name)
            cut_at = len(ledger)
            while len(ledger) < TOTAL:
                await anyio.sleep(0.05)
    assert cuts == 2, "the consumer's and the publisher's connections were cut"
    assert cut_at < TOTAL, "the cut came mid-stream"
    missing = set(range(TOTAL)) - ledger
    assert not missing, f"lost {len(missing)} messages, e.g. {sorted(missing)[:10]}"
    assert deliveries >= TOTAL  # duplicates are allowed, losses are not

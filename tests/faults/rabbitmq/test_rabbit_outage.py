"""The broker gone for a while (every connection cut, new ones refused), then back:
the transport reconnects with backoff, publishes made meanwhile wait and land, the
consumer resumes, and the ledger shows nothing lost."""

from __future__ import annotations

import uuid

import anyio
import msgspec

import bus
from tests.brokers.rabbitmq import PORT, url_for

from .proxy import Proxy

TOTAL = 2_000


class Numbered(msgspec.Struct):
    n: int


async def test_an_outage_with_reconnects_refused_loses_nothing(rabbitmq_run: str) -> None:
    proxy = Proxy()
    await proxy.start()
    tag = uuid.uuid4().hex[:6]
    url = url_for(rabbitmq_run).replace(f":{PORT}/", f":{proxy.port}/")
    topic = f"outage.{tag}"
    ledger: set[int] = set()
    service = bus.Service(f"g-{tag}")

    @service.subscribe(topic, concurrency=16)
    async def handle(item: Numbered) -> None:
        ledger.add(item.n)

    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        published = 0

        async def publish_all() -> None:
            nonlocal published
            for start in range(0, TOTAL, 50):
                async with anyio.create_task_group() as batch:
                    for n in range(start, start + 50):
                        batch.start_soon(publisher.publish, topic, Numbered(n))
                published = start + 50

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all)
            with anyio.fail_after(60):
                while len(ledger) < TOTAL // 4:
                    await anyio.sleep(0.01)
                await proxy.stop()
                accepted = proxy.accepted
                stalled_at = published
                # Down for a while: reconnect attempts are refused, publishes wait.
                with anyio.move_on_after(1.5):
                    while published < TOTAL:
                        await anyio.sleep(0.05)
                assert published < TOTAL, "publishing stalled during the outage"
                await proxy.start()
                while len(ledger) < TOTAL:
                    await anyio.sleep(0.05)
    await proxy.stop()
    assert stalled_at < TOTAL
    assert proxy.accepted > accepted, "the bus connected again once the broker was back"
    missing = set(range(TOTAL)) - ledger
    assert not missing, f"lost {len(missing)} messages, e.g. {sorted(missing)[:10]}"

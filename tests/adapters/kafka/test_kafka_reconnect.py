"""Every connection to the broker is cut mid-stream: aiokafka reconnects with backoff,
and the ledger shows nothing lost. The broker is reached through a TCP proxy (it
advertises the proxy's port), so cutting the proxy's connections cuts them all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

import bus
from tests.brokers.kafka import OPTIONS, Tansu, free_port
from tests.brokers.kafka_proxy import Proxy


class Job(msgspec.Struct):
    n: int


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[str, Proxy]]:
    port = free_port()
    broker = Tansu(advertised_port=port)
    try:
        broker.wait_ready()
        proxy = Proxy(port, broker.port)
        async with anyio.create_task_group() as tg:
            await proxy.serve(tg)
            yield broker.url(OPTIONS), proxy
            tg.cancel_scope.cancel()
    finally:
        broker.stop()


async def test_connections_cut_mid_stream_lose_nothing(proxied: tuple[str, Proxy]) -> None:
    url, proxy = proxied
    tag = uuid.uuid4().hex[:8]
    topic, group = f"cut.{tag}", f"g-{tag}"
    handled: set[int] = set()
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=4)
    async def handle(job: Job) -> None:
        handled.add(job.n)

    total = 600
    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        for n in range(total):
            if n in (200, 400):
                with anyio.fail_after(20):  # cut once the consumer is reading
                    while not handled:
                        await anyio.sleep(0.01)
                proxy.cut()
            with anyio.fail_after(60):
                while True:  # a publish that failed in the cut is sent again
                    try:
                        await publisher.publish(topic, Job(n), key=str(n % 7))
                        break
                    except bus.PublishError:
                        await anyio.sleep(0.1)
        with anyio.fail_after(60):
            while len(handled) < total:
                await anyio.sleep(0.02)
    assert handled == set(range(total))
    assert proxy.cuts == 2
    assert proxy.dropped >= 6, "the cuts dropped the producer's and consumers' connections"


async def test_a_broker_gone_for_seconds_is_reconnected(proxied: tuple[str, Proxy]) -> None:
    url, proxy = proxied
    tag = uuid.uuid4().hex[:8]
    topic, group = f"gone.{tag}", f"g-{tag}"
    handled: set[int] = set()
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=4)
    async def handle(job: Job) -> None:
        handled.add(job.n)

    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        for n in range(100):
            await publisher.publish(topic, Job(n))
        with anyio.fail_after(20):
            while len(handled) < 100:
                await anyio.sleep(0.02)
        proxy.down()
        async with anyio.create_task_group() as tg:

            async def back_in_3s() -> None:
                await anyio.sleep(3.0)  # the outage itself
                proxy.up()

            tg.start_soon(back_in_3s)
            for n in range(100, 200):  # publishes wait for the broker, then go through
                with anyio.fail_after(40):
                    await publisher.publish(topic, Job(n))
        with anyio.fail_after(40):
            while len(handled) < 200:
                await anyio.sleep(0.02)
    assert handled == set(range(200))

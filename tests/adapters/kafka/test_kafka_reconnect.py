"""Every connection to the broker is cut mid-stream: aiokafka reconnects with backoff,
and the ledger shows nothing lost. The broker is reached through a TCP proxy (it
advertises the proxy's port), so cutting the proxy's connections cuts them all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest
from anyio.abc import SocketStream, TaskGroup

import bus
from tests.brokers.kafka import HOST, OPTIONS, Tansu, free_port


class Job(msgspec.Struct):
    n: int


class Proxy:
    """Forwards a port to the broker; ``cut()`` drops every connection open now."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.scopes: set[anyio.CancelScope] = set()
        self.cuts = 0
        self.dropped = 0
        self.refusing = False

    async def serve(self, tg: TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=self.port)
        tg.start_soon(listener.serve, self._pipe)

    def down(self) -> None:
        """The broker is unreachable: connections dropped, new ones closed at once."""
        self.refusing = True
        self.cut()

    def up(self) -> None:
        self.refusing = False

    async def _pipe(self, client: SocketStream) -> None:
        if self.refusing:
            await client.aclose()
            return
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                async with (
                    client,
                    await anyio.connect_tcp(HOST, self.target) as upstream,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(_copy, client, upstream)
                    tg.start_soon(_copy, upstream, client)
            except OSError:
                pass
            finally:
                self.scopes.discard(scope)

    def cut(self) -> None:
        self.cuts += 1
        self.dropped += len(self.scopes)
        for scope in list(self.scopes):
            scope.cancel()


async def _copy(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        await sink.aclose()


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

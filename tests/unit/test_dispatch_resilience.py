"""A consumer whose broker call fails does not take the bus down: the worker logs, waits
and asks again, and the other subscriptions never notice."""

from __future__ import annotations

from typing import Any

import pytest

import bus
from adapters.memory.transport import MemoryConsumer, MemoryDelivery, MemoryTransport
from tests.conformance.helpers import Item, unique, wait_until


class FlakyConsumer:
    """The embedded consumer, failing its first two waits as a lost connection would."""

    def __init__(self, inner: MemoryConsumer) -> None:
        self.inner = inner
        self.failures_left = 2

    def __aiter__(self) -> FlakyConsumer:
        return self

    async def __anext__(self) -> MemoryDelivery:
        if self.failures_left:
            self.failures_left -= 1
            raise bus.ConnectionLost("broker went away (injected)")
        return await self.inner.__anext__()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_failing_consumer_recovers_and_others_keep_flowing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flaky_topic, calm_topic = unique("t"), unique("t")
    real_consume = MemoryTransport.consume

    async def consume(self: MemoryTransport, topic: str, group: str, **kw: Any) -> Any:
        consumer = await real_consume(self, topic, group, **kw)
        return FlakyConsumer(consumer) if topic == flaky_topic else consumer

    monkeypatch.setattr(MemoryTransport, "consume", consume)
    got: dict[str, list[int]] = {flaky_topic: [], calm_topic: []}
    svc = bus.Service(unique("svc"))

    @svc.subscribe(flaky_topic, concurrency=1)
    async def flaky(item: Item) -> None:
        got[flaky_topic].append(item.n)

    @svc.subscribe(calm_topic, concurrency=1)
    async def calm(item: Item) -> None:
        got[calm_topic].append(item.n)

    async with bus.Bus(f"memory://{unique('flaky')}", services=[svc]) as b:
        for i in range(3):
            await b.publish(flaky_topic, Item(i))
            await b.publish(calm_topic, Item(i))
        await wait_until(lambda: got[calm_topic] == [0, 1, 2])
        await wait_until(lambda: sorted(got[flaky_topic]) == [0, 1, 2])
    assert "broker went away (injected)" in caplog.text

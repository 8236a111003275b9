"""Settling on its failure paths and a graceful close's first step, on a real broker:

- a retry or dead-letter copy the broker does not take raises and leaves the delivery
  unsettled; given back, it comes again (counted) and the records behind it flow;
- a record given back again waits a pause, so the records behind it go first;
- ``stop_fetching`` hands out nothing more, lets what was handed out be settled (even
  past ``max_poll_interval_ms``: the member stays in its group), and what was only read
  ahead reaches the next member as new.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from adapters.kafka import KafkaTransport
from adapters.kafka.consumer import KafkaConsumer
from bus.errors import PublishError
from tests.brokers.kafka import OPTIONS, Tansu, free_port
from tests.brokers.kafka_proxy import Proxy

from .test_kafka_transport import msg, take


async def member(transport: KafkaTransport, topic: str, group: str) -> KafkaConsumer:
    consumer = await transport.consume(topic, group, prefetch=10)
    assert isinstance(consumer, KafkaConsumer)
    return consumer


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Tansu, Proxy]]:
    """A tansu of this test's own behind a proxy that can start black-holing produces."""
    port = free_port()
    broker = Tansu(advertised_port=port)
    try:
        broker.wait_ready()
        proxy = Proxy(port, broker.port)
        async with anyio.create_task_group() as tg:
            await proxy.serve(tg)
            yield broker, proxy
            tg.cancel_scope.cancel()
    finally:
        broker.stop()


async def test_a_copy_the_broker_does_not_take_raises_and_the_record_can_be_given_back(
    proxied: tuple[Tansu, Proxy],
) -> None:
    broker, proxy = proxied
    transport = KafkaTransport(broker.url(f"{OPTIONS}&publish_timeout_ms=1000"))
    await transport.connect()
    tag = uuid.uuid4().hex[:8]
    topic, group = f"t.{tag}", f"g-{tag}"
    try:
        consumer = await member(transport, topic, group)
        for body in (b"failing", b"behind"):
            await transport.publish(topic, msg(body, key="k"))
        failing = await take(consumer)
        assert (failing.message.body, failing.redeliveries) == (b"failing", 0)

        proxy.black_hole_produce = True  # from the next connection on
        proxy.cut()
        with anyio.fail_after(20), pytest.raises(PublishError):
            await failing.retry(0.0, {"bus-attempt": "2"})
        with anyio.fail_after(20), pytest.raises(PublishError):
            await failing.dead_letter({"bus-dlq-reason": "failed"})
        assert proxy.swallowed, "no copy reached the broker's black hole"
        await failing.give_back()
        await failing.give_back()  # idempotent
        await failing.ack()  # given back: settled already, does nothing

        again = await take(consumer)
        assert (again.message.body, again.redeliveries) == (b"failing", 1)
        await again.ack()
        behind = await take(consumer)
        assert (behind.message.body, behind.redeliveries) == (b"behind", 0)
        await behind.ack()

        proxy.black_hole_produce = False
        proxy.cut()
        await consumer.close()  # both settled: the commit passes them
        await transport.publish(topic, msg(b"marker", key="k"))
        successor = await member(transport, topic, group)
        assert (await take(successor, timeout=30)).message.body == b"marker"
        await successor.close()
    finally:
        proxy.black_hole_produce = False
        await transport.close()


async def test_a_record_given_back_again_lets_those_behind_it_go_first(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await member(transport, topic, group)
    for body in (b"stuck", b"next"):
        await transport.publish(topic, msg(body, key="k"))
    first = await take(consumer)
    assert (first.message.body, first.redeliveries) == (b"stuck", 0)
    await first.give_back()
    second = await take(consumer)  # first in line again
    assert (second.message.body, second.redeliveries) == (b"stuck", 1)
    await second.give_back()
    behind = await take(consumer)  # "stuck" waits its pause meanwhile
    assert (behind.message.body, behind.redeliveries) == (b"next", 0)
    await behind.ack()
    third = await take(consumer)
    assert (third.message.body, third.redeliveries) == (b"stuck", 2)
    await third.ack()
    await consumer.close()
    await transport.publish(topic, msg(b"marker", key="k"))
    successor = await member(transport, topic, group)
    assert (await take(successor, timeout=30)).message.body == b"marker"
    await successor.close()


async def test_stop_fetching_keeps_what_was_handed_out_and_returns_the_rest_uncounted(
    kafka_broker: Tansu,
) -> None:
    # A short max_poll_interval_ms: the handed-out record is settled after it, and is
    # committed all the same (the member kept polling, so it stayed in its group).
    transport = KafkaTransport(kafka_broker.url(f"{OPTIONS}&max_poll_interval_ms=2000"))
    await transport.connect()
    tag = uuid.uuid4().hex[:8]
    topic, group = f"t.{tag}", f"g-{tag}"
    bodies = [f"m{n}".encode() for n in range(5)]
    try:
        consumer = await member(transport, topic, group)
        for body in bodies:
            await transport.publish(topic, msg(body, key="k"))
        held = await take(consumer)
        assert held.message.body == b"m0"
        with anyio.fail_after(20):  # the rest is read ahead, never handed out
            while len(consumer._ahead) < 4:
                await anyio.sleep(0.01)

        async def waiting() -> None:
            with pytest.raises(StopAsyncIteration):
                await consumer.__anext__()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting)  # an idle worker ends too
            await consumer.stop_fetching()
            await consumer.stop_fetching()  # idempotent
        assert consumer.poll() is None
        with pytest.raises(StopAsyncIteration):
            await consumer.__anext__()
        await transport.publish(topic, msg(b"late", key="k"))
        # The handler runs on past max_poll_interval_ms (2 s); nothing is handed out.
        with anyio.move_on_after(4.0):
            while True:
                assert consumer.poll() is None
                await anyio.sleep(0.05)
        assert consumer._in_group(), "dropped from its group while a handler ran"
        await held.ack()
        await consumer.close()

        successor = await member(transport, topic, group)
        seen = []
        for _ in range(5):
            d = await take(successor, timeout=30)
            seen.append((d.message.body, d.redeliveries))
            await d.ack()
        # m0 was acked and committed; what was only read ahead comes as new.
        assert seen == [(body, 0) for body in [*bodies[1:], b"late"]]
        await successor.close()
    finally:
        await transport.close()

"""Settling on its failure paths: give_back, copies that were not taken, destinations an
operator deleted, and stop_fetching returning what was never handed out uncounted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import anyio
import anyio.lowlevel
import pytest

from adapters.rabbitmq import RabbitTransport, topology
from adapters.rabbitmq.consumer import RabbitConsumer, RabbitDelivery
from bus.errors import PublishError
from bus.message import Message, new_id

DEADLINE = 20.0


def msg(body: bytes = b"{}", **fields: object) -> Message:
    return Message(id=new_id(), body=body, **fields)  # type: ignore[arg-type]


async def take(consumer: RabbitConsumer) -> RabbitDelivery:
    with anyio.fail_after(DEADLINE):
        return await consumer.__anext__()


@pytest.fixture
async def plain(rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel of a plain aio-pika connection: an operator's, or a foreign client's."""
    async with await aio_pika.connect(rabbitmq_url.split("?")[0]) as conn:
        yield await conn.channel()


async def ready(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """How many messages ``queue`` holds ready (not handed to a consumer)."""
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def test_give_back_returns_it_counted_and_frees_its_prefetch_slot(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=1)
    await transport.publish(topic, msg(b"first"))
    await transport.publish(topic, msg(b"second"))
    first = await take(consumer)
    with anyio.fail_after(5):  # bounded, never raises
        await first.give_back()
        await first.give_back()
    await first.ack()  # settled by the give-back: does nothing
    again = await take(consumer)  # the slot is free: something flows
    assert (again.message.body, again.redeliveries) == (b"first", 1)
    await again.ack()
    second = await take(consumer)
    assert second.message.body == b"second"
    await consumer.close()
    with anyio.fail_after(5):
        await second.give_back()  # its channel is gone, which requeued it: no error


async def test_a_copy_not_taken_raises_and_leaves_the_delivery_unsettled(
    rabbitmq_refusing_url: str, names: tuple[str, str]
) -> None:
    topic, group = names
    t = RabbitTransport(rabbitmq_refusing_url)
    await t.connect()
    try:
        consumer = await t.consume(topic, group, prefetch=1)
        for body in (b"held", b"ready-1", b"ready-2"):
            await t.publish(topic, msg(body))
        held = await take(consumer)  # two more wait: the queue is full
        with pytest.raises(PublishError):
            await held.retry(0.0, {"bus-attempt": "2"})  # refused by the full queue
        await held.dead_letter({"bus-dlq-reason": "failed"})  # still unsettled: this works
        assert [m.body async for m in t.dead_letters(topic, group)] == [b"held"]
        await consumer.close()
    finally:
        await t.close()


async def test_a_dead_letter_queue_deleted_by_an_operator_is_declared_again(
    transport: RabbitTransport, names: tuple[str, str], plain: aio_pika.abc.AbstractChannel
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=5)
    await transport.publish(topic, msg(b"doomed"))
    doomed = await take(consumer)
    await plain.queue_delete(topology.dead_letter_queue(transport.config, topic, group))
    await doomed.dead_letter({"bus-dlq-reason": "rejected"})
    assert [m.body async for m in transport.dead_letters(topic, group)] == [b"doomed"]
    await consumer.close()


async def test_a_delay_queue_deleted_by_an_operator_is_declared_again(
    transport: RabbitTransport, names: tuple[str, str], plain: aio_pika.abc.AbstractChannel
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=5)
    queue = topology.group_queue(transport.config, topic, group)
    for body in (b"one", b"two"):
        await transport.publish(topic, msg(body))
        d = await take(consumer)
        await d.retry(0.2, {"bus-attempt": "2"})  # declares the delay queue (the first time)
        back = await take(consumer)
        assert (back.message.body, back.message.headers) == (body, {"bus-attempt": "2"})
        await back.ack()
        # gone before the next retry, which its sender thinks it declared a moment ago
        await plain.queue_delete(f"{queue}:delay:{topology.delay_bucket_ms(0.2)}")
    await consumer.close()


@pytest.fixture(params=["classic", "quorum"])
async def typed_transport(
    request: pytest.FixtureRequest, rabbitmq_url: str
) -> AsyncIterator[RabbitTransport]:
    t = RabbitTransport(f"{rabbitmq_url}&queue_type={request.param}")
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


async def wait_all_pushed(plain: aio_pika.abc.AbstractChannel, queue: str) -> None:
    """Until the broker has pushed everything in ``queue`` to its consumer."""
    with anyio.fail_after(DEADLINE):
        while await ready(plain, queue):
            await anyio.sleep(0.02)


async def test_stop_fetching_returns_what_was_never_handed_out_uncounted(
    typed_transport: RabbitTransport,
    names: tuple[str, str],
    plain: aio_pika.abc.AbstractChannel,
) -> None:
    t = typed_transport
    topic, group = names
    queue = topology.group_queue(t.config, topic, group)
    consumer = await t.consume(topic, group, prefetch=5)
    for i in range(5):
        await t.publish(topic, msg(b"%d" % i))
    busy = await take(consumer)  # a handler is working on this one
    await wait_all_pushed(plain, queue)  # the other four sit prefetched, never handed out
    with anyio.fail_after(DEADLINE):
        await consumer.stop_fetching()
        await consumer.stop_fetching()  # idempotent
    assert consumer.poll() is None
    with pytest.raises(StopAsyncIteration):
        await consumer.__anext__()
    await t.publish(topic, msg(b"late"))  # taken by nobody until a new member comes
    await busy.ack()  # handed out before the stop: still settles
    await consumer.close()

    successor = await t.consume(topic, group, prefetch=10)
    got = sorted([await take(successor) for _ in range(5)], key=lambda d: d.message.body)
    assert [d.message.body for d in got] == [b"1", b"2", b"3", b"4", b"late"]
    assert [d.redeliveries for d in got] == [0] * 5, "returned, not counted as redelivered"
    assert all("bus-attempt" not in d.message.headers for d in got)
    for d in got:
        await d.ack()
    await successor.close()
    assert await ready(plain, queue) == 0, "the busy one was acked, not returned"


async def test_a_returned_message_keeps_the_redeliveries_it_already_had(
    typed_transport: RabbitTransport,
    names: tuple[str, str],
    plain: aio_pika.abc.AbstractChannel,
) -> None:
    t = typed_transport
    topic, group = names
    queue = topology.group_queue(t.config, topic, group)
    first = await t.consume(topic, group, prefetch=1)
    await t.publish(topic, msg(b"x", headers={"bus-attempt": "2"}))
    assert (await take(first)).redeliveries == 0
    await first.close()  # died holding it: the broker counts one redelivery
    second = await t.consume(topic, group, prefetch=1)
    await wait_all_pushed(plain, queue)  # prefetched, never handed out
    await second.stop_fetching()
    await second.close()
    third = await t.consume(topic, group, prefetch=1)
    d = await take(third)
    # what the core computes as ctx.attempt: bus-attempt + redeliveries, 2 + 1 both times
    assert (d.message.headers, d.redeliveries) == ({"bus-attempt": "3"}, 0)
    await d.ack()
    await third.close()


async def test_settles_made_while_stopping_land_after_the_cancel(
    typed_transport: RabbitTransport,
    names: tuple[str, str],
    plain: aio_pika.abc.AbstractChannel,
) -> None:
    """While stopping, a consumer holds every ack and nack (an ack frees a prefetch slot the
    queue would refill during the cancel, and a quorum queue returns such a message
    counted): each still lands once the cancel is confirmed."""
    t = typed_transport
    topic, group = names
    queue = topology.group_queue(t.config, topic, group)
    consumer = await t.consume(topic, group, prefetch=5)
    for i in range(6):
        await t.publish(topic, msg(b"%d" % i))
    done, failed = await take(consumer), await take(consumer)  # two handlers at work
    await wait_all_pushed_but(plain, queue, 1)  # b"2".."4" prefetched, b"5" ready
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.stop_fetching)
            while consumer.fetching:  # until the stop has begun (its cancel has not)
                await anyio.lowlevel.checkpoint()
            await done.ack()  # both handlers finish during the stop
            await failed.give_back()
    await consumer.close()

    successor = await t.consume(topic, group, prefetch=10)
    got = sorted([await take(successor) for _ in range(5)], key=lambda d: d.message.body)
    assert [d.message.body for d in got] == [b"1", b"2", b"3", b"4", b"5"], "b'0' acked"
    assert [d.redeliveries for d in got] == [1, 0, 0, 0, 0], "only the given-back counted"
    for d in got:
        await d.ack()
    await successor.close()
    assert await ready(plain, queue) == 0


async def wait_all_pushed_but(plain: aio_pika.abc.AbstractChannel, queue: str, left: int) -> None:
    """Until the broker has pushed all but ``left`` of ``queue`` to its consumer."""
    with anyio.fail_after(DEADLINE):
        while await ready(plain, queue) > left:
            await anyio.sleep(0.02)

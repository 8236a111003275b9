"""KafkaTransport on a real broker (tansu): the Transport contract, case by case."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka import KafkaTransport
from adapters.kafka.config import parse
from adapters.kafka.consumer import KafkaConsumer
from adapters.kafka.delivery import KafkaDelivery
from bus.message import MSGPACK, Message, new_id

DEADLINE = 20.0


def msg(body: bytes, key: str | None = None, **headers: str) -> Message:
    return Message(id=new_id(), body=body, key=key, headers=headers)


async def take(consumer: KafkaConsumer, timeout: float = DEADLINE) -> KafkaDelivery:
    with anyio.fail_after(timeout):
        return await consumer.__anext__()


async def nothing_within(consumer: KafkaConsumer, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await consumer.__anext__()
        return False
    return True


async def test_round_trip_keeps_every_field_in_record_headers(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=1)
    sent = Message(
        id=new_id(),
        body=b"\x00\xffbody",
        headers={"x-a": "ünï ✓", "traceparent": "00-abc-def-01"},
        key="order-1",
        correlation_id="conv-1",
        reply_to="bus.inbox.someone",
        content_type=MSGPACK,
    )
    await transport.publish(topic, sent)
    delivery = await take(consumer)
    assert msgspec.structs.replace(delivery.message, native=None) == sent
    assert delivery.redeliveries == 0
    await delivery.ack()
    await delivery.ack()  # idempotent
    await consumer.close()
    await consumer.close()


async def test_a_foreign_record_gets_a_stable_id_and_json(
    transport: KafkaTransport, kafka_url: str, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=1)
    producer = AIOKafkaProducer(bootstrap_servers=transport.config.bootstrap_servers)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b'{"n": 1}', key=b"k", headers=[("x", b"y")])
    finally:
        await producer.stop()
    delivery = await take(consumer)
    m = delivery.message
    assert m.id == f"{topic}-{meta.partition}-{meta.offset}"
    assert (m.key, m.headers, m.content_type, m.body) == (
        "k",
        {"x": "y"},
        "application/json",
        b'{"n": 1}',
    )
    await consumer.close()


async def test_only_settled_offsets_are_committed_and_the_rest_redelivered(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    first = await transport.consume(topic, group, prefetch=3)
    for n in range(3):
        await transport.publish(topic, msg(f"m{n}".encode(), key="same"))
    held = [await take(first) for _ in range(3)]
    assert [d.message.body for d in held] == [b"m0", b"m1", b"m2"]
    await held[2].ack()  # out of order: m0 is still being handled
    await held[1].ack()
    await first.close()  # m0 never settled: nothing of this partition may be committed
    second = await transport.consume(topic, group, prefetch=3)
    again = [await take(second) for _ in range(3)]
    assert [d.message.body for d in again] == [b"m0", b"m1", b"m2"]
    for d in again:
        await d.ack()
    await second.close()
    third = await transport.consume(topic, group, prefetch=1)
    await transport.publish(topic, msg(b"marker", key="same"))
    assert (await take(third)).message.body == b"marker"
    await third.close()


async def test_a_joining_member_never_gets_a_record_still_being_handled(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    holder = await transport.consume(topic, group, prefetch=1)
    await transport.publish(topic, msg(b"held", key="k"))
    delivery = await take(holder)
    joiner = await transport.consume(topic, group, prefetch=1)
    # The rebalance waits for the holder's handler: the joiner gets nothing meanwhile.
    assert await nothing_within(joiner, 2.0)
    await delivery.ack()
    await holder.close()
    await transport.publish(topic, msg(b"after", key="k"))
    assert (await take(joiner)).message.body == b"after"
    await joiner.close()


async def test_retry_comes_back_no_sooner_than_its_delay_while_others_flow(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=2)
    await transport.publish(topic, msg(b"failing", key="k"))
    delivery = await take(consumer)
    asked = time.monotonic()
    await delivery.retry(1.0, {"bus-attempt": "2"})
    await delivery.retry(1.0, {"bus-attempt": "2"})  # idempotent: one copy only
    await transport.publish(topic, msg(b"healthy", key="k"))
    healthy = await take(consumer)
    # Before the failing copy: a waiting retry holds up nothing (no wall-clock bound
    # here, which a stalled CI machine could break without anything being wrong).
    assert healthy.message.body == b"healthy", "the waiting retry held up the partition"
    await healthy.ack()
    again = await take(consumer)
    assert time.monotonic() - asked >= 1.0
    assert again.message.body == b"failing"
    assert again.message.headers == {"bus-attempt": "2"}
    assert again.message.id == delivery.message.id
    await again.ack()
    assert await nothing_within(consumer, 0.5), "a second copy was retried"
    await consumer.close()


async def test_a_retry_waiting_when_its_member_closes_survives(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=1)
    await transport.publish(topic, msg(b"later"))
    await (await take(consumer)).retry(2.0, {})
    asked = time.monotonic()
    await consumer.close()
    successor = await transport.consume(topic, group, prefetch=1)
    again = await take(successor)
    assert again.message.body == b"later"
    assert time.monotonic() - asked >= 2.0 - 0.01
    await again.ack()
    await successor.close()


async def test_dead_letters_browse_and_replay_to_that_group_only(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    other = group + "-other"
    mine = await transport.consume(topic, group, prefetch=2)
    theirs = await transport.consume(topic, other, prefetch=2)
    for n in range(2):
        await transport.publish(topic, msg(f"bad{n}".encode(), key="k", origin="x"))
    for _ in range(2):
        d = await take(mine)
        await d.dead_letter({**d.message.headers, "bus-dlq-reason": "failed"})
        await d.dead_letter({})  # idempotent
    for _ in range(2):
        await (await take(theirs)).ack()
    letters = [m async for m in transport.dead_letters(topic, group)]
    assert [m.body for m in letters] == [b"bad0", b"bad1"]
    assert letters[0].headers == {"origin": "x", "bus-dlq-reason": "failed"}
    assert [m async for m in transport.dead_letters(topic, group)] == letters  # browsing keeps
    assert [m async for m in transport.dead_letters(topic, other)] == []
    assert await transport.replay(topic, group) == 2
    back = sorted([(await take(mine)).message.body for _ in range(2)])
    assert back == [b"bad0", b"bad1"]
    assert await nothing_within(theirs, 0.5), "replay reached another group"
    assert await transport.replay(topic, group) == 0, "a second replay moved letters again"
    assert [m async for m in transport.dead_letters(topic, group)] == []
    await mine.close()
    await theirs.close()


async def test_inbox_gets_many_replies_in_flight(transport: KafkaTransport, kafka_url: str) -> None:
    inbox = await transport.open_inbox()
    assert inbox.address.startswith("bus.inbox.")
    responder = KafkaTransport(kafka_url)
    await responder.connect()
    try:
        async with anyio.create_task_group() as tg:
            for n in range(300):
                tg.start_soon(responder.send, inbox.address, msg(str(n).encode(), key=None))
        got: set[bytes] = set()
        with anyio.fail_after(DEADLINE):
            async for reply in inbox:
                got.add(reply.body)
                if len(got) == 300:
                    break
        assert got == {str(n).encode() for n in range(300)}
    finally:
        await responder.close()
    await inbox.close()
    with pytest.raises(StopAsyncIteration):
        await inbox.__anext__()


async def test_a_closed_inbox_leaves_no_topic_behind(
    transport: KafkaTransport, kafka_url: str
) -> None:
    inbox = await transport.open_inbox()
    admin = AIOKafkaAdminClient(bootstrap_servers=parse(kafka_url).bootstrap_servers)
    await admin.start()
    try:
        assert inbox.address in await admin.list_topics()
        await inbox.close()
        with anyio.fail_after(DEADLINE):
            while inbox.address in await admin.list_topics():
                await anyio.sleep(0.05)
    finally:
        await admin.close()


async def test_close_ends_waiting_readers(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=1)
    ended = anyio.Event()

    async def wait_one() -> None:
        with pytest.raises(StopAsyncIteration):
            await consumer.__anext__()
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_one)
        await anyio.lowlevel.checkpoint()
        await consumer.close()
        with anyio.fail_after(5):
            await ended.wait()

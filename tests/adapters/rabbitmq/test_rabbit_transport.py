"""RabbitTransport against the real broker: the Transport contract, method by method."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import aio_pika
import anyio
import msgspec
import pytest

from adapters.rabbitmq import RabbitTransport, topology
from adapters.rabbitmq.consumer import RabbitConsumer, RabbitDelivery
from bus.errors import ConfigError, ConnectionLost, PublishError
from bus.message import JSON, MSGPACK, Message, new_id
from tests.brokers.rabbitmq import run_names

DEADLINE = 20.0


def msg(body: bytes = b"{}", **fields: object) -> Message:
    return Message(id=new_id(), body=body, **fields)  # type: ignore[arg-type]


async def take(consumer: RabbitConsumer) -> RabbitDelivery:
    with anyio.fail_after(DEADLINE):
        return await consumer.__anext__()


async def test_first_connect_fails_loudly_naming_the_redacted_url() -> None:
    t = RabbitTransport("amqp://guest:hunter2@127.0.0.1:1/?exchange=x")
    with pytest.raises(ConnectionLost) as info:
        await t.connect()
    assert "127.0.0.1:1" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(t)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("amqp://guest:hunter2@127.0.0.1:5672/", "user and password"),
        ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "vhost"),
    ],
)
async def test_a_refused_login_or_vhost_is_a_config_error(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        await RabbitTransport(url).connect()
    assert "hunter2" not in str(info.value)


async def test_round_trip_maps_every_field(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=5)
    sent = msg(
        b"\x81\xa1n\x01",
        headers={"h": "v", "traceparent": "00-x"},
        key="k-1",
        correlation_id="c-1",
        reply_to="somewhere",
        content_type=MSGPACK,
    )
    await transport.publish(topic, sent)
    got = await take(consumer)
    assert msgspec.structs.replace(got.message, native=None) == sent
    assert got.redeliveries == 0
    await got.ack()
    await got.ack()  # idempotent
    await consumer.close()
    await consumer.close()


async def test_plain_clients_interoperate(
    transport: RabbitTransport, names: tuple[str, str], rabbitmq_url: str
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=5)
    conn = await aio_pika.connect(rabbitmq_url.split("?")[0])
    try:
        channel = await conn.channel()
        exchange = await channel.get_exchange(transport.config.exchange)
        # a foreign message: no id, no content type, odd header types
        await exchange.publish(
            aio_pika.Message(b'{"n": 1}', headers={"num": 7, "text": "t"}), topic
        )
        got = await take(consumer)
        assert got.message.body == b'{"n": 1}'
        assert len(got.message.id) == 32 and got.message.content_type == JSON
        assert got.message.headers == {"num": "7", "text": "t"}
        await got.ack()

        # a bus message read by a plain client
        plain = await channel.declare_queue(exclusive=True)
        await plain.bind(exchange, topic)
        sent = msg(b'{"n": 2}', headers={"a": "b"}, key="k")
        await transport.publish(topic, sent)
        with anyio.fail_after(DEADLINE):
            async with plain.iterator() as it:
                raw = await it.__anext__()
        assert raw.body == sent.body and raw.message_id == sent.id
        assert raw.content_type == JSON and raw.headers == {"a": "b", "bus-key": "k"}
        assert await take(consumer)
    finally:
        await conn.close()


async def test_close_returns_unsettled_deliveries_counted_as_redelivered(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    first = await transport.consume(topic, group, prefetch=10)
    for i in range(3):
        await transport.publish(topic, msg(str(i).encode()))
    held = [await take(first) for _ in range(3)]
    await held[0].ack()
    await first.close()
    await held[1].ack()  # after close: does nothing, the message went back
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()
    second = await transport.consume(topic, group, prefetch=10)
    again = sorted([await take(second), await take(second)], key=lambda d: d.message.body)
    assert [d.message.body for d in again] == [b"1", b"2"]
    assert [d.redeliveries for d in again] == [1, 1]
    for d in again:
        await d.ack()
    await second.close()


async def test_many_tasks_share_a_consumer_and_cancelling_loses_nothing(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=50)
    # a waiter cancelled before anything arrives takes nothing with it
    with anyio.move_on_after(0.05):
        await consumer.__anext__()
    got: list[bytes] = []

    async def worker() -> None:
        while True:
            d = await consumer.__anext__()
            got.append(d.message.body)
            await d.ack()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker)
        for i in range(200):
            await transport.publish(topic, msg(str(i).encode()))
        with anyio.fail_after(DEADLINE):
            while len(got) < 200:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert sorted(got) == sorted(str(i).encode() for i in range(200))
    await consumer.close()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3, 0.7])
async def test_retry_arrives_after_its_delay_to_this_group_only(
    transport: RabbitTransport, names: tuple[str, str], delay: float
) -> None:
    topic, group = names
    consumer = await transport.consume(topic, group, prefetch=5)
    other = await transport.consume(topic, group + "-other", prefetch=5)
    await transport.publish(topic, msg(b"x", headers={"orig": "1"}))
    first = await take(consumer)
    await (await take(other)).ack()
    started = time.monotonic()
    await first.retry(delay, {"bus-attempt": "2"})
    await first.retry(delay, {"bus-attempt": "3"})  # settled already: nothing
    again = await take(consumer)
    assert time.monotonic() - started >= delay
    assert again.message.headers == {"bus-attempt": "2"} and again.message.id == first.message.id
    await again.ack()
    with anyio.move_on_after(0.3):
        await other.__anext__()
        pytest.fail("a retry reached another group")
    await consumer.close()
    await other.close()


async def test_dead_letters_browse_without_removing_then_replay(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    assert [m async for m in transport.dead_letters(topic, group)] == []  # never declared
    assert await transport.replay(topic, group) == 0
    consumer = await transport.consume(topic, group, prefetch=10)
    bystander = await transport.consume(topic, group + "-b", prefetch=10)
    for i in range(5):
        await transport.publish(topic, msg(str(i).encode(), key=f"k{i}"))
    for i in range(5):
        d = await take(consumer)
        await d.dead_letter({"bus-dlq-reason": "failed", "n": str(i)})
        await (await take(bystander)).ack()
    first = [m async for m in transport.dead_letters(topic, group)]
    second = [m async for m in transport.dead_letters(topic, group)]
    assert [m.body for m in first] == [str(i).encode() for i in range(5)]
    assert first == second
    assert first[0].headers == {"bus-dlq-reason": "failed", "n": "0"} and first[0].key == "k0"
    assert await transport.replay(topic, group) == 5
    back = [await take(consumer) for _ in range(5)]
    assert sorted(d.message.body for d in back) == [str(i).encode() for i in range(5)]
    assert back[0].message.headers["bus-dlq-reason"] == "failed"
    assert [m async for m in transport.dead_letters(topic, group)] == []
    with anyio.move_on_after(0.3):
        await bystander.__anext__()
        pytest.fail("replay reached another group")
    await consumer.close()
    await bystander.close()


async def test_request_reply_many_in_flight_on_one_inbox(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    inbox = await transport.open_inbox()
    requests = await transport.consume(topic, group, prefetch=100)

    async def respond() -> None:
        async for d in requests:
            assert d.message.reply_to is not None
            reply = msg(d.message.body, correlation_id=d.message.id)
            await transport.send(d.message.reply_to, reply)
            await d.ack()

    sent = [msg(str(i).encode(), reply_to=inbox.address) for i in range(500)]
    replies: dict[str, bytes] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(respond)
        async with anyio.create_task_group() as pubs:
            for m in sent:
                pubs.start_soon(transport.publish, topic, m)
        with anyio.fail_after(DEADLINE):
            while len(replies) < len(sent):
                r = await inbox.__anext__()
                assert r.correlation_id is not None
                replies[r.correlation_id] = r.body
        tg.cancel_scope.cancel()
    assert replies == {m.id: m.body for m in sent}
    await inbox.close()
    with pytest.raises(StopAsyncIteration):
        await inbox.__anext__()
    await requests.close()


async def test_send_to_an_inbox_nobody_reads_is_dropped_quietly(
    transport: RabbitTransport,
) -> None:
    inbox = await transport.open_inbox()
    address = inbox.address
    await inbox.close()
    await transport.send("amq.rabbitmq.reply-to.g1hkABCDEFGH", msg())
    await transport.send(address, msg())
    await transport.publish("nobody.bound", msg())  # no group: dropped, no error


async def test_a_refused_publish_raises(rabbitmq_refusing_url: str, names: tuple[str, str]) -> None:
    topic, group = names
    t = RabbitTransport(rabbitmq_refusing_url)
    await t.connect()
    try:
        consumer = await t.consume(topic, group, prefetch=1)
        await consumer.close()  # bound, nobody reading
        await t.publish(topic, msg())
        await t.publish(topic, msg())
        with pytest.raises(PublishError):
            await t.publish(topic, msg())
    finally:
        await t.close()


@pytest.fixture
async def quorum(rabbitmq_url: str) -> AsyncIterator[RabbitTransport]:
    t = RabbitTransport(rabbitmq_url + "&queue_type=quorum")
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


async def test_quorum_queues_count_redeliveries(
    quorum: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    t = quorum
    consumer = await t.consume(topic, group, prefetch=5)
    await t.publish(topic, msg())
    first = await take(consumer)
    await first.retry(0.05, {"bus-attempt": "2"})
    assert (await take(consumer)).message.headers == {"bus-attempt": "2"}
    await consumer.close()
    again = await t.consume(topic, group, prefetch=5)
    d = await take(again)
    assert d.redeliveries >= 1
    await d.dead_letter({"bus-dlq-reason": "failed"})
    # A quorum queue takes back what a browse returned through its Raft log, a
    # moment later; the browse waits for that, so the dead-lettering itself is
    # the only thing to wait for, and a browse or replay right after sees it all.
    with anyio.fail_after(10):
        while not [m async for m in t.dead_letters(topic, group)]:
            await anyio.sleep(0.05)
    for _ in range(3):  # browsing leaves them, in order, with no broker headers
        letters = [m async for m in t.dead_letters(topic, group)]
        assert [m.headers for m in letters] == [{"bus-dlq-reason": "failed"}]
    assert await t.replay(topic, group) == 1
    back = await take(again)
    assert back.message.headers == {"bus-dlq-reason": "failed"}
    await back.ack()
    await again.close()


async def test_unconfirmed_topic_publishes_still_settle_with_confirms(
    rabbitmq_url: str, names: tuple[str, str]
) -> None:
    topic, group = names
    t = RabbitTransport(rabbitmq_url + "&confirm=false")
    await t.connect()
    try:
        consumer = await t.consume(topic, group, prefetch=5)
        await t.publish(topic, msg(b"fast"))
        d = await take(consumer)
        await d.dead_letter({"bus-dlq-reason": "rejected"})
        assert [m.body async for m in t.dead_letters(topic, group)] == [b"fast"]
        await consumer.close()
    finally:
        await t.close()


async def test_a_queue_declared_otherwise_is_a_config_error(
    transport: RabbitTransport, rabbitmq_url: str, names: tuple[str, str]
) -> None:
    topic, group = names
    await (await transport.consume(topic, group, prefetch=1)).close()
    other = RabbitTransport(rabbitmq_url + "&queue_type=quorum")
    await other.connect()
    try:
        with pytest.raises(ConfigError, match="queue_type"):
            await other.consume(topic, group, prefetch=1)
        await other.publish(topic, msg())  # the transport is still usable
    finally:
        await other.close()


async def test_an_ephemeral_group_gets_new_messages_and_leaves_nothing_behind(
    transport: RabbitTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    watcher = await transport.consume(topic, group, prefetch=5, ephemeral=True)
    other = await transport.consume(topic, group, prefetch=5, ephemeral=True)
    await transport.publish(topic, msg(b"seen"))
    got = await take(watcher)
    assert got.message.body == b"seen" and (await take(other)).message.body == b"seen"
    await got.ack()
    assert watcher.poll() is None
    await transport.publish(topic, msg(b"polled"))
    with anyio.fail_after(DEADLINE):
        while (polled := watcher.poll()) is None:
            await anyio.sleep(0.01)
    assert polled.message.body == b"polled"
    await polled.ack()
    await watcher.close()
    await other.close()
    assert watcher.poll() is None
    prefix = f"{transport.config.exchange}:{group}:{topic}"
    queues, _ = await anyio.to_thread.run_sync(run_names, prefix)
    assert queues == [], "nothing left behind"


async def test_closing_the_transport_ends_its_consumers_and_inboxes(
    rabbitmq_url: str, names: tuple[str, str]
) -> None:
    topic, group = names
    t = RabbitTransport(rabbitmq_url)
    await t.connect()
    consumer = await t.consume(topic, group, prefetch=5)
    inbox = await t.open_inbox()
    ended: list[str] = []

    async def drain(name: str, it: AsyncIterator[object]) -> None:
        async for _ in it:
            pass
        ended.append(name)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, "consumer", consumer)
            tg.start_soon(drain, "inbox", inbox)
            await t.close()
    assert sorted(ended) == ["consumer", "inbox"]


async def test_a_quorum_browse_ends_with_every_letter_back(
    quorum: RabbitTransport, rabbitmq_url: str, names: tuple[str, str]
) -> None:
    """A quorum queue applies a browse's return through its Raft log, a moment after the
    browse lets go; a replay or browse that counted in between once saw none (CI, stop 9)."""
    topic, group = names
    t = quorum
    consumer = await t.consume(topic, group, prefetch=5)
    await t.publish(topic, msg())
    await (await take(consumer)).dead_letter({"bus-dlq-reason": "failed"})
    await consumer.close()
    dlq = topology.dead_letter_queue(t.config, topic, group)
    async with await aio_pika.connect(rabbitmq_url.split("?")[0]) as plain:
        channel = await plain.channel()
        for _ in range(299):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=dlq)
    with anyio.fail_after(10):
        while len([m async for m in t.dead_letters(topic, group)]) < 300:
            await anyio.sleep(0.05)
    for _ in range(5):
        async with contextlib.aclosing(t.dead_letters(topic, group)) as letters:
            async for _m in letters:
                break  # a browse left early, and closed, has put back what it took
        assert len([m async for m in t.dead_letters(topic, group)]) == 300
    assert await t.replay(topic, group) == 300

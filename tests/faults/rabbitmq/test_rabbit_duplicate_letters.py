"""A lost channel between a dead letter's copy and the ack of its original leaves two
copies in the dead-letter queue (RabbitMQ cannot make the two one step). Both carry the
message id, derived from the content for a foreign message without one, so browsing
yields each letter once and replay moves it once and drops the duplicate."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator

import aio_pika
import anyio
import msgspec
import pytest
from aio_pika.abc import AbstractChannel

import bus
from adapters.rabbitmq import RabbitTransport, topology
from adapters.rabbitmq.config import parse
from adapters.rabbitmq.consumer import RabbitConsumer, RabbitDelivery
from bus.message import Message, new_id
from tests.adapters.rabbitmq.foreign import TYPED_FIELDS, RawHeaders, table
from tests.brokers.rabbitmq import PORT, url_for

from .proxy import Proxy

DEADLINE = 30.0


@pytest.fixture
async def plain(rabbitmq_url: str) -> AsyncIterator[AbstractChannel]:
    async with await aio_pika.connect(rabbitmq_url.split("?")[0]) as conn:
        yield await conn.channel()


@pytest.fixture
async def transport(rabbitmq_url: str) -> AsyncIterator[RabbitTransport]:
    t = RabbitTransport(rabbitmq_url)
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"dup.{tag}", f"g-{tag}"


async def ready(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def take(consumer: RabbitConsumer) -> RabbitDelivery:
    with anyio.fail_after(DEADLINE):
        return await consumer.__anext__()


async def test_a_channel_lost_before_the_ack_leaves_a_duplicate_counted_once(
    rabbitmq_url: str,
    transport: RabbitTransport,
    names: tuple[str, str],
    plain: AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic, group = names
    lost: list[str] = []
    ack = RabbitDelivery.ack

    async def channel_lost_instead(self: RabbitDelivery) -> None:
        """The first ack of each message never reaches the broker: its channel dies
        first (the fault a connection cut produces, at the worst moment)."""
        if self.message.body in lost:
            return await ack(self)
        lost.append(self.message.body)  # type: ignore[arg-type]
        await self._channel.close()

    monkeypatch.setattr(RabbitDelivery, "ack", channel_lost_instead)
    consumer = await transport.consume(topic, group, prefetch=5)
    await transport.publish(topic, Message(id=new_id(), body=b"ours"))
    raw = await plain.get_underlay_channel()
    await raw.basic_publish(  # a foreign message without a message_id
        b"theirs",
        exchange=transport.config.exchange,
        routing_key=topic,
        properties=RawHeaders(table(*TYPED_FIELDS), send_id=False),
    )
    for _ in range(4):  # each dead-lettered twice: before and after its channel died
        d = await take(consumer)
        await d.dead_letter({**d.message.headers, "bus-dlq-reason": "rejected"})
    await consumer.close()
    dlq = topology.dead_letter_queue(transport.config, topic, group)
    assert await ready(plain, dlq) == 4, "two copies of each are parked"

    letters = [m async for m in transport.dead_letters(topic, group)]
    assert sorted(m.body for m in letters) == [b"ours", b"theirs"]
    listed = await anyio.run_process(
        [sys.executable, "-m", "bus", "--url", rabbitmq_url, "dlq", "list", topic, "--group", group]
    )
    ids = [line.split()[0] for line in listed.stdout.decode().splitlines() if line.strip()]
    assert sorted(ids) == sorted(m.id for m in letters), "`bus dlq list` counts each once"
    assert await ready(plain, dlq) == 4, "browsing and listing left both copies in place"
    assert await transport.replay(topic, group) == 2
    assert await ready(plain, dlq) == 0, "the duplicates were dropped"
    assert await ready(plain, topology.group_queue(transport.config, topic, group)) == 2


class Numbered(msgspec.Struct):
    n: int


async def letter_ids(b: bus.Bus, topic: str, group: str) -> set[str]:
    """The message ids of the group's dead letters now, each once."""
    return {d.message_id async for d in b.dead_letters(topic, group=group)}


TOTAL = 400
ROUNDS = 8


async def test_connections_cut_during_a_stream_of_rejects_count_each_letter_once(
    rabbitmq_run: str, plain: AbstractChannel
) -> None:
    """Cut the consumer's connection (a proxy dropping it) again and again while it
    dead-letters a stream of messages, until the queue shows duplicates; then each
    message is browsed once and replayed once."""
    proxy = Proxy()
    await proxy.start()
    tag = uuid.uuid4().hex[:6]
    url = url_for(rabbitmq_run)
    consumer_url = url.replace(f":{PORT}/", f":{proxy.port}/")
    config = parse(url)
    topic, group = f"dup.{tag}", f"g-{tag}"
    dlq = topology.dead_letter_queue(config, topic, group)
    handled = 0
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=32)
    async def refuse(item: Numbered) -> None:
        nonlocal handled
        handled += 1
        raise bus.Reject(f"no {item.n}")

    rounds = 0
    parked = 0
    try:
        async with bus.Bus(url) as publisher:
            async with bus.Bus(consumer_url, services=[service]):
                while rounds < ROUNDS:
                    rounds += 1
                    start = (rounds - 1) * (TOTAL // ROUNDS)
                    async with anyio.create_task_group() as tg:
                        for n in range(start, start + TOTAL // ROUNDS):
                            tg.start_soon(publisher.publish, topic, Numbered(n))
                    with anyio.fail_after(DEADLINE):
                        while handled < start + 10:  # the stream is flowing: cut it
                            await anyio.sleep(0.001)
                    await proxy.stop()
                    await proxy.start()
                    target = start + TOTAL // ROUNDS
                    # Until every message of this round has its letter. The queue's depth
                    # alone does not say so: it counts the duplicates too, and closing
                    # the consumer before the last letters are made would leave those
                    # messages in the group's queue, never parked.
                    with anyio.fail_after(DEADLINE):
                        while len(await letter_ids(publisher, topic, group)) < target:
                            await anyio.sleep(0.05)
                    if await ready(plain, dlq) > target and rounds >= 2:
                        break  # duplicates made, by more than one cut
            sent = start + TOTAL // ROUNDS
            queue = topology.group_queue(config, topic, group)
            # Redeliveries of originals whose ack a cut lost may still wait in the queue
            # (the consumer is gone); they are duplicates at-least-once allows.
            leftover = await ready(plain, queue)
            parked = await ready(plain, dlq)
            letters = [d async for d in publisher.dead_letters(topic, group=group)]
            ids = [d.message_id for d in letters]
            assert len(ids) == len(set(ids)), "each letter browsed once"
            assert len(ids) == sent, f"{sent - len(ids)} never parked ({leftover} left)"
            numbers = sorted(msgspec.json.decode(d.body, type=Numbered).n for d in letters)
            assert numbers == list(range(sent))
            assert await publisher.replay(topic, group=group) == sent
    finally:
        await proxy.stop()
    assert parked > sent, f"no duplicates were made in {rounds} cuts: the test proved nothing"
    assert await ready(plain, dlq) == 0, "the duplicates were dropped"
    assert await ready(plain, queue) == leftover + sent
    print(f"{rounds} cuts, {sent} messages, {parked} parked, {leftover} left, {handled} calls")

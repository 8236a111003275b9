"""Garbage and wrong-schema values from a plain aiokafka producer are dead-lettered as
undecodable, and the consumer keeps going."""

from __future__ import annotations

import uuid

import anyio
import msgspec
from aiokafka import AIOKafkaProducer

import bus


class Order(msgspec.Struct):
    order_id: str
    total_cents: int


BAD = [
    b"\xff\xfe not json at all",
    b'{"order_id": 5, "total_cents": "lots"}',  # wrong schema
    b"[1, 2, 3]",
    b"",
]


async def test_bad_values_from_a_plain_producer_are_parked_and_the_consumer_goes_on(
    kafka_url: str,
) -> None:
    tag = uuid.uuid4().hex[:6]
    topic, group = f"garbage.{tag}", f"g-{tag}"
    handled: list[str] = []
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=4)
    async def handle(order: Order) -> None:
        handled.append(order.order_id)

    async with bus.Bus(kafka_url, services=[service]) as b:
        servers = kafka_url.split("://", 1)[1].split("?", 1)[0]
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
        await producer.start()
        try:
            for i, body in enumerate(BAD):
                await producer.send_and_wait(topic, body, key=b"k%d" % i)
                good = b'{"order_id": "o-%d", "total_cents": 1}' % i
                await producer.send_and_wait(topic, good, headers=[("from", b"aiokafka")])
        finally:
            await producer.stop()
        letters: list[bus.DeadLetter] = []
        with anyio.fail_after(30):
            while len(handled) < len(BAD):
                await anyio.sleep(0.02)
            while len(letters) < len(BAD):
                letters = [d async for d in b.dead_letters(topic, group=group)]
                await anyio.sleep(0.05)
    assert sorted(handled) == [f"o-{i}" for i in range(len(BAD))]
    assert sorted(d.body for d in letters) == sorted(BAD)
    for letter in letters:
        assert letter.headers["bus-dlq-reason"] == "undecodable"
        assert letter.headers["bus-dlq-original-topic"] == topic
        assert letter.headers["bus-dlq-consumer-group"] == group
        assert letter.message_id.startswith(f"{topic}-")  # topic-partition-offset

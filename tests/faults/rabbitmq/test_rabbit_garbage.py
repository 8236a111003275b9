"""Garbage and wrong-schema bodies from a plain AMQP client are dead-lettered as
undecodable, and the consumer keeps going."""

from __future__ import annotations

import uuid

import aio_pika
import anyio
import msgspec

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


async def test_bad_input_from_a_plain_client_is_parked_and_the_consumer_goes_on(
    rabbitmq_run: str, rabbitmq_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    topic, group = f"garbage.{tag}", f"g-{tag}"
    handled: list[str] = []
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=4)
    async def handle(order: Order) -> None:
        handled.append(order.order_id)

    async with bus.Bus(rabbitmq_url, services=[service]) as b:
        conn = await aio_pika.connect(rabbitmq_url.split("?")[0])
        try:
            channel = await conn.channel()
            exchange = await channel.get_exchange(rabbitmq_run)
            for i, body in enumerate(BAD):
                await exchange.publish(aio_pika.Message(body), topic)
                good = b'{"order_id": "o-%d", "total_cents": 1}' % i
                await exchange.publish(aio_pika.Message(good, headers={"from": "pika"}), topic)
        finally:
            await conn.close()
        with anyio.fail_after(20):
            while len(handled) < len(BAD):
                await anyio.sleep(0.02)
            letters: list[bus.DeadLetter] = []
            while len(letters) < len(BAD):
                letters = [d async for d in b.dead_letters(topic, group=group)]
                await anyio.sleep(0.05)
    assert sorted(handled) == [f"o-{i}" for i in range(len(BAD))]
    assert sorted(d.body for d in letters) == sorted(BAD)
    for letter in letters:
        assert letter.headers["bus-dlq-reason"] == "undecodable"
        assert letter.headers["bus-dlq-original-topic"] == topic
        assert letter.headers["bus-dlq-consumer-group"] == group
        assert len(letter.message_id) == 32  # a foreign message gets an id

"""The raw side on RabbitMQ: aio-pika as its documentation shows it (callback consumers,
``message.ack()``, ``exchange.publish`` with publisher confirms, direct reply-to)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from benchmarks.rabbitmq_raw import Requester, Responder
from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import Payload, encode, noop
from benchmarks.suite.model import decode as decode_payload
from benchmarks.suite.track import Latencies, Tracker

JSON = "application/json"
WINDOW = 200


@asynccontextmanager
async def _connection(url: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    conn = await aio_pika.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def _message(p: Payload) -> aio_pika.Message:
    return aio_pika.Message(
        encode(p),
        content_type=JSON,
        message_id=uuid.uuid4().hex,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class RabbitRaw:
    name = "aio-pika"

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange

    async def _publisher(self, conn: aio_pika.abc.AbstractConnection) -> AbstractExchange:
        channel = await conn.channel(publisher_confirms=True)
        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _queues(self, conn: aio_pika.abc.AbstractConnection, topics: list[str]) -> None:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for topic in topics:
            queue = await channel.declare_queue(self.queue(topic), durable=True)
            await queue.bind(exchange, topic)
        await channel.close()

    def queue(self, topic: str) -> str:
        return f"{self.exchange}:raw:{topic}"

    async def publish(self, topic: str, items: list[Payload], window: int) -> float:
        async with _connection(self.url) as conn:
            await self._queues(conn, [topic])
            exchange = await self._publisher(conn)
            await exchange.publish(_message(Payload(-1, 0.0, False, "")), topic)

            async def send(p: Payload) -> None:
                await exchange.publish(_message(p), topic)

            return await drive.timed_publish(items, window, send)

    async def consume(self, job: ConsumeJob) -> float:
        tracker = Tracker(job.loads, job.expected, job.work)
        async with _connection(self.url) as conn:
            topics = list(job.loads)
            await self._queues(conn, topics)
            exchange = await self._publisher(conn)
            pairs = job.interleaved()

            async def send(i: int) -> None:
                topic, p = pairs[i]
                await exchange.publish(_message(p), topic)

            await drive.calls_in_flight(len(pairs), WINDOW, send)
            for topic in topics:
                channel = await conn.channel()
                await channel.set_qos(prefetch_count=job.concurrency)
                queue = await channel.get_queue(self.queue(topic))
                await queue.consume(self._callback(tracker, topic, job.retry))
            return await tracker.run(job.timeout)

    @staticmethod
    def _callback(tracker: Tracker, topic: str, retry: bool):  # type: ignore[no-untyped-def]
        async def on_message(message: AbstractIncomingMessage) -> None:
            p = decode_payload(message.body)
            if retry:
                await drive.retry_in_place(lambda x: tracker.handle(topic, x), p)
            else:
                await tracker.handle(topic, p)
            await message.ack()

        return on_message

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        topic = f"rr.{uid()}"
        async with _connection(self.url) as conn:
            await self._queues(conn, [topic])

        async def answer(p: Payload) -> Payload:
            await noop(p)
            return p

        responder = Responder(self.url, self.queue(topic), Payload, answer)
        requester = Requester(self.url, self.exchange, Payload)
        await responder.start(32)
        await requester.start()
        try:
            await requester.request(topic, size_items[0], timeout=60.0)

            async def call(i: int) -> None:
                await requester.request(topic, size_items[i % len(size_items)], timeout=30.0)

            return await drive.calls_in_flight(n, in_flight, call)
        finally:
            await requester.close()
            await responder.close()

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        latencies = Latencies(len(items))
        async with _connection(self.url) as consumer_conn, _connection(self.url) as pub_conn:
            await self._queues(consumer_conn, [topic])
            channel = await consumer_conn.channel()
            await channel.set_qos(prefetch_count=16)

            async def on_message(message: AbstractIncomingMessage) -> None:
                await latencies.handle(topic, decode_payload(message.body))
                await message.ack()

            await (await channel.get_queue(self.queue(topic))).consume(on_message)
            exchange = await self._publisher(pub_conn)

            async def warm() -> None:
                await exchange.publish(_message(Payload(-1, 0.0, False, "")), topic)

            await drive.warm_until(latencies.warm, warm, 60.0)

            async def send(p: Payload) -> None:
                await exchange.publish(_message(p), topic)

            await drive.fixed_rate(items, rate, send)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
        return latencies.samples

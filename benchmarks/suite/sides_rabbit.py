"""The raw side on RabbitMQ: aio-pika as its documentation shows it, doing the bus's work.

Persistent messages published with publisher confirms (many callers awaiting one publish
each on one confirm channel; a batch is published together and awaited together); a
callback consumer per queue on its own channel with the bus's credit (prefetch = twice
the handler concurrency, as ``bus.bus.PREFETCH_PER_HANDLER``; aio-pika runs each
delivery's callback as a task, and a semaphore bounds the handlers to the concurrency),
decode into the same Struct, await the handler, then ``message.ack()``; request-reply
over direct reply-to with a future per call, the responder publishing each reply
(confirmed) before it acks the request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractExchange, AbstractIncomingMessage

from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import WARM, Payload, decode, encode, noop
from benchmarks.suite.track import Latencies, Tracker
from bus.bus import PREFETCH_PER_HANDLER

JSON = "application/json"
REPLY_TO = "amq.rabbitmq.reply-to"


@asynccontextmanager
async def _connection(url: str) -> AsyncIterator[AbstractConnection]:
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
    profiled = False

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange

    def queue(self, topic: str) -> str:
        return f"{self.exchange}:raw:{topic}"

    async def _publisher(self, conn: AbstractConnection) -> AbstractExchange:
        channel = await conn.channel(publisher_confirms=True)
        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _queues(self, conn: AbstractConnection, topics: list[str]) -> None:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for topic in topics:
            queue = await channel.declare_queue(self.queue(topic), durable=True)
            await queue.bind(exchange, topic)
        await channel.close()

    async def publish_one(self, topic: str, items: list[Payload], callers: int) -> float:
        async with _connection(self.url) as conn:
            await self._queues(conn, [topic])
            exchange = await self._publisher(conn)
            await exchange.publish(_message(WARM), topic)

            async def send(i: int) -> None:
                await exchange.publish(_message(items[i]), topic)

            return await drive.calls_in_flight(len(items), callers, send)

    async def publish_batch(self, topic: str, items: list[Payload], size: int) -> float:
        async with _connection(self.url) as conn:
            await self._queues(conn, [topic])
            exchange = await self._publisher(conn)
            await exchange.publish(_message(WARM), topic)

            async def send(batch: list[Payload]) -> None:
                await asyncio.gather(*(exchange.publish(_message(p), topic) for p in batch))

            return await drive.timed_batches(items, size, send)

    async def consume(self, job: ConsumeJob) -> float:
        tracker = Tracker(job.loads, job.expected, job.work)
        async with _connection(self.url) as conn:
            topics = list(job.loads)
            await self._queues(conn, topics)
            for topic in topics:  # subscribed first, as the bus is
                channel = await conn.channel()
                await channel.set_qos(prefetch_count=job.workers * PREFETCH_PER_HANDLER)
                queue = await channel.get_queue(self.queue(topic))
                handlers = asyncio.Semaphore(job.workers)
                await queue.consume(self._callback(tracker, topic, job.retry, handlers))
            exchange = await self._publisher(conn)
            pairs = job.interleaved()

            async def send(i: int) -> None:
                topic, p = pairs[i]
                await exchange.publish(_message(p), topic)

            await drive.calls_in_flight(len(pairs), drive.PRELOAD, send)
            return await tracker.run(job.timeout)

    @staticmethod
    def _callback(  # type: ignore[no-untyped-def]
        tracker: Tracker, topic: str, retry: bool, handlers: asyncio.Semaphore
    ):
        async def on_message(message: AbstractIncomingMessage) -> None:
            async with handlers:
                p = decode(message.body)
                if retry:
                    await drive.retry_in_place(lambda x: tracker.handle(topic, x), p)
                else:
                    await tracker.handle(topic, p)
                await message.ack()

        return on_message

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        topic = f"rr.{uid()}"
        async with _connection(self.url) as server, _connection(self.url) as client:
            await self._queues(server, [topic])
            await self._responder(server, topic, 32)
            call = await self._requester(client, topic)
            await call(items[0])

            async def one(i: int) -> None:
                await call(items[i % len(items)])

            return await drive.calls_in_flight(n, in_flight, one)

    async def _responder(self, conn: AbstractConnection, topic: str, prefetch: int) -> None:
        channel = await conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = channel.default_exchange

        async def on_request(message: AbstractIncomingMessage) -> None:
            p = decode(message.body)
            await noop(p)
            reply = aio_pika.Message(
                encode(p),
                content_type=JSON,
                correlation_id=message.correlation_id,
                message_id=uuid.uuid4().hex,
            )
            await exchange.publish(reply, message.reply_to or "", mandatory=False)
            await message.ack()

        await (await channel.get_queue(self.queue(topic))).consume(on_request)

    async def _requester(self, conn: AbstractConnection, topic: str):  # type: ignore[no-untyped-def]
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.exchange)
        pending: dict[str, asyncio.Future[Payload]] = {}

        async def on_reply(message: AbstractIncomingMessage) -> None:
            future = pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(decode(message.body))

        replies = await channel.get_queue(REPLY_TO, ensure=False)
        await replies.consume(on_reply, no_ack=True)
        loop = asyncio.get_running_loop()

        async def call(p: Payload) -> Payload:
            cid = uuid.uuid4().hex
            future: asyncio.Future[Payload] = loop.create_future()
            pending[cid] = future
            try:
                message = aio_pika.Message(
                    encode(p), content_type=JSON, correlation_id=cid, message_id=cid,
                    reply_to=REPLY_TO,
                )  # fmt: skip
                await exchange.publish(message, topic)
                return await asyncio.wait_for(future, 30.0)
            finally:
                pending.pop(cid, None)

        return call

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        latencies = Latencies(len(items))
        async with _connection(self.url) as consumer_conn, _connection(self.url) as pub_conn:
            await self._queues(consumer_conn, [topic])
            channel = await consumer_conn.channel()
            await channel.set_qos(prefetch_count=16)

            async def on_message(message: AbstractIncomingMessage) -> None:
                await latencies.handle(topic, decode(message.body))
                await message.ack()

            await (await channel.get_queue(self.queue(topic))).consume(on_message)
            exchange = await self._publisher(pub_conn)

            async def warm() -> None:
                await exchange.publish(_message(WARM), topic)

            await drive.warm_until(latencies.warm, warm, 60.0)

            async def send(p: Payload) -> None:
                await exchange.publish(_message(p), topic)

            await drive.fixed_rate(items, rate, send)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
        return latencies.samples

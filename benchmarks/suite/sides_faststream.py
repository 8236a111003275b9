"""The peer side (``--peers``): FastStream doing the same work where it supports the case.

Set up as a performance-minded user would: its per-message logging off (``logger=None``),
FastDepends off (``apply_types=False``), decoding by the same msgspec decoder into the
same Struct, ack after the handler, publisher confirms (RabbitMQ) and acks=all (Kafka).
FastStream has no retry policy with backoff (a failing message is nacked back at once,
or rejected), so the ``failing`` scenario is left out for it; the others it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import Payload, encode
from benchmarks.suite.model import decode as decode_payload
from benchmarks.suite.track import Latencies, Tracker

WINDOW = 200


async def _decoder(message: Any) -> Payload:
    return decode_payload(message.body)


class _Common:
    name = "FastStream"

    def _broker(self) -> Any:
        raise NotImplementedError

    def _subscribe(self, broker: Any, topic: str, concurrency: int, handle: Any) -> Any:
        raise NotImplementedError

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        raise NotImplementedError

    async def _publish(self, broker: Any, topic: str, p: Payload) -> None:
        raise NotImplementedError

    async def _prepare(self, broker: Any, topics: list[str]) -> None:
        """Make ``topics`` exist and keep what is published to them."""

    async def publish(self, topic: str, items: list[Payload], window: int) -> float:
        broker = self._broker()
        async with broker:
            await broker.start()
            await self._prepare(broker, [topic])
            await self._publish(broker, topic, Payload(-1, 0.0, False, ""))

            async def send(p: Payload) -> None:
                await self._publish(broker, topic, p)

            return await drive.timed_publish(items, window, send)

    async def consume(self, job: ConsumeJob) -> float:
        if job.retry:
            raise NotImplementedError("FastStream has no retry policy with backoff")
        tracker = Tracker(job.loads, job.expected, job.work)
        broker = self._broker()
        for topic in job.loads:
            self._subscribe(broker, topic, job.concurrency, _handler(tracker, topic))
        async with broker:
            await broker.start()
            pairs = job.interleaved()

            async def send(i: int) -> None:
                await self._publish(broker, *pairs[i])

            await drive.calls_in_flight(len(pairs), WINDOW, send)
            return await tracker.run(job.timeout)

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        latencies = Latencies(len(items))
        broker = self._broker()
        self._subscribe(broker, topic, 16, _handler(latencies, topic))
        async with broker:
            await broker.start()

            async def warm() -> None:
                await self._publish(broker, topic, Payload(-1, 0.0, False, ""))

            await drive.warm_until(latencies.warm, warm, 60.0)

            async def send(p: Payload) -> None:
                await self._publish(broker, topic, p)

            await drive.fixed_rate(items, rate, send)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
        return latencies.samples


def _handler(tracker: Tracker | Latencies, topic: str) -> Any:
    async def handle(p: Payload) -> None:
        await tracker.handle(topic, p)

    return handle


class FastStreamRabbit(_Common):
    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
        self.prefix = exchange

    def _broker(self) -> Any:
        return RabbitBroker(self.url, logger=None, apply_types=False)

    def _queue(self, topic: str) -> RabbitQueue:
        return RabbitQueue(f"{self.prefix}:fs:{topic}", durable=True, routing_key=topic)

    def _subscribe(self, broker: Any, topic: str, concurrency: int, handle: Any) -> Any:
        return broker.subscriber(
            self._queue(topic),
            self.exchange,
            channel=Channel(prefetch_count=concurrency),
            decoder=_decoder,
            ack_policy=AckPolicy.REJECT_ON_ERROR,
            no_reply=True,
        )(handle)

    async def _prepare(self, broker: Any, topics: list[str]) -> None:
        for topic in topics:
            queue = await broker.declare_queue(self._queue(topic))
            exchange = await broker.declare_exchange(self.exchange)
            await queue.bind(exchange, routing_key=topic)

    async def _publish(self, broker: Any, topic: str, p: Payload) -> None:
        await broker.publish(
            encode(p), exchange=self.exchange, routing_key=topic, persist=True,
            content_type="application/json",
        )  # fmt: skip

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        raise NotImplementedError(
            "FastStream 0.7.8's RabbitBroker.request failed against this RabbitMQ (3.10) with "
            "PRECONDITION_FAILED 'fast reply consumer does not exist', and it serialises "
            "requests behind one lock"
        )


class FastStreamKafka(_Common):
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def _broker(self) -> Any:
        return KafkaBroker(
            self.bootstrap, logger=None, apply_types=False, acks="all", enable_idempotence=False
        )

    def _subscribe(self, broker: Any, topic: str, concurrency: int, handle: Any) -> Any:
        from benchmarks.suite.brokers import KAFKA_OPTIONS

        options: dict[str, Any] = {}
        if concurrency > 1:
            options["max_workers"] = concurrency
        return broker.subscriber(
            topic,
            group_id=f"fs-{uid()}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=int(KAFKA_OPTIONS["fetch_max_wait_ms"]),
            session_timeout_ms=int(KAFKA_OPTIONS["session_timeout_ms"]),
            heartbeat_interval_ms=int(KAFKA_OPTIONS["session_timeout_ms"]) // 3,
            decoder=_decoder,
            # Commit after the handler, as the bus does (its default, ACK_FIRST, commits
            # on receipt: at most once).
            ack_policy=AckPolicy.ACK,
            no_reply=True,
            **options,
        )(handle)

    async def _publish(self, broker: Any, topic: str, p: Payload) -> None:
        await broker.publish(encode(p), topic)

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        raise NotImplementedError(
            'FastStream 0.7.8: "Kafka doesn\'t support `request` method without test client"'
        )

"""The peers (``--peers``): FastStream doing the same work where it supports the case.

Set up as its documentation recommends for throughput: its per-message logging off
(``logger=None``), FastDepends off (``apply_types=False``), decoding by the same msgspec
decoder into the same Struct, publisher confirms (RabbitMQ) and acks=all (Kafka). On
RabbitMQ it acks after the handler (its default, ``REJECT_ON_ERROR``), prefetch =
concurrency. On Kafka two peers: ``AckPolicy.ACK`` (commit after the handler, as the bus
and raw aiokafka do), whose concurrent mode runs one group member per worker, so
``max_workers`` is capped at the partition count; and FastStream's default
``ACK_FIRST`` (commit on receipt: at most once), ``max_workers`` = concurrency.
FastStream has no retry policy with backoff (a failing message is nacked back at once,
or rejected), so the ``failing`` scenario is left out for it, and its request-reply
does not run here (see ``round_trips``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from benchmarks.suite import drive
from benchmarks.suite.brokers import KAFKA_OPTIONS
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import WARM, Payload, encode
from benchmarks.suite.model import decode as decode_payload
from benchmarks.suite.track import Latencies, Tracker


async def _decoder(message: Any) -> Payload:
    return decode_payload(message.body)


class _Common:
    name = "FastStream"
    profiled = False

    def _broker(self) -> Any:
        raise NotImplementedError

    def _subscribe(self, broker: Any, topic: str, job: ConsumeJob | None, handle: Any) -> Any:
        raise NotImplementedError

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        raise NotImplementedError

    async def _publish(self, broker: Any, topic: str, p: Payload) -> None:
        raise NotImplementedError

    async def _publish_batch(self, broker: Any, topic: str, batch: list[Payload]) -> None:
        await asyncio.gather(*(self._publish(broker, topic, p) for p in batch))

    async def _prepare(self, broker: Any, topics: list[str]) -> None:
        """Make ``topics`` exist and keep what is published to them."""

    async def publish_one(self, topic: str, items: list[Payload], callers: int) -> float:
        async with self._broker() as broker:
            await broker.start()
            await self._prepare(broker, [topic])
            await self._publish(broker, topic, WARM)

            async def send(i: int) -> None:
                await self._publish(broker, topic, items[i])

            return await drive.calls_in_flight(len(items), callers, send)

    async def publish_batch(self, topic: str, items: list[Payload], size: int) -> float:
        async with self._broker() as broker:
            await broker.start()
            await self._prepare(broker, [topic])
            await self._publish(broker, topic, WARM)

            async def send(batch: list[Payload]) -> None:
                await self._publish_batch(broker, topic, batch)

            return await drive.timed_batches(items, size, send)

    async def consume(self, job: ConsumeJob) -> float:
        if job.retry:
            raise NotImplementedError("FastStream has no retry policy with backoff")
        tracker = Tracker(job.loads, job.expected, job.work)
        broker = self._broker()
        for topic in job.loads:
            self._subscribe(broker, topic, job, _handler(tracker, topic))
        async with broker:
            await broker.start()  # subscribed first, as the bus is
            pairs = job.interleaved()

            async def send(i: int) -> None:
                await self._publish(broker, *pairs[i])

            await drive.calls_in_flight(len(pairs), drive.PRELOAD, send)
            return await tracker.run(job.timeout)

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        latencies = Latencies(len(items))
        broker = self._broker()
        self._subscribe(broker, topic, None, _handler(latencies, topic))
        async with broker:
            await broker.start()

            async def warm() -> None:
                await self._publish(broker, topic, WARM)

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

    def _subscribe(self, broker: Any, topic: str, job: ConsumeJob | None, handle: Any) -> Any:
        return broker.subscriber(
            self._queue(topic),
            self.exchange,
            channel=Channel(prefetch_count=job.workers if job else 16),
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

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        raise NotImplementedError(
            "FastStream 0.7.8's RabbitBroker.request failed against this RabbitMQ (3.10) with "
            "PRECONDITION_FAILED 'fast reply consumer does not exist', and it serialises "
            "requests behind one lock"
        )


class FastStreamKafka(_Common):
    def __init__(self, bootstrap: str, ack_first: bool = False) -> None:
        self.bootstrap = bootstrap
        self.ack_first = ack_first
        self.name = "FastStream ACK_FIRST" if ack_first else "FastStream ACK"

    def _broker(self) -> Any:
        # max_batch_size: its publish_batch builds one aiokafka batch, 16 KiB by default,
        # too small for a batch of 100 (BatchBufferOverflowException).
        return KafkaBroker(
            self.bootstrap, logger=None, apply_types=False, acks="all", enable_idempotence=False,
            max_batch_size=1024 * 1024,
        )  # fmt: skip

    def _subscribe(self, broker: Any, topic: str, job: ConsumeJob | None, handle: Any) -> Any:
        workers = job.workers if job else 16
        partitions = (job.partitions if job else None) or int(KAFKA_OPTIONS["partitions"])
        if not self.ack_first:
            workers = min(workers, partitions)  # one group member per worker
        options: dict[str, Any] = {"max_workers": workers} if workers > 1 else {}
        if not self.ack_first:
            options["ack_policy"] = AckPolicy.ACK
        return broker.subscriber(
            topic,
            group_id=f"fs-{uid()}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=int(KAFKA_OPTIONS["fetch_max_wait_ms"]),
            session_timeout_ms=int(KAFKA_OPTIONS["session_timeout_ms"]),
            heartbeat_interval_ms=int(KAFKA_OPTIONS["session_timeout_ms"]) // 3,
            decoder=_decoder,
            no_reply=True,
            **options,
        )(handle)

    async def _publish(self, broker: Any, topic: str, p: Payload) -> None:
        await broker.publish(encode(p), topic)

    async def _publish_batch(self, broker: Any, topic: str, batch: list[Payload]) -> None:
        await broker.publish_batch(*(encode(p) for p in batch), topic=topic)

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        raise NotImplementedError(
            'FastStream 0.7.8: "Kafka doesn\'t support `request` method without test client"'
        )

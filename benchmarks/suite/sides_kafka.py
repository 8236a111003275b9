"""The raw side on Kafka: aiokafka by hand. A producer with acks=all; a consumer group
that fetches ahead, handles records concurrently (``concurrency`` per topic), and commits
each fetched batch once it and every earlier batch are handled."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.suite import drive
from benchmarks.suite.brokers import KAFKA_OPTIONS
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import Payload, encode, noop
from benchmarks.suite.model import decode as decode_payload
from benchmarks.suite.track import Latencies, Tracker

WINDOW = 200
Handle = Callable[[str, Payload], Awaitable[None]]
FETCH_WAIT = int(KAFKA_OPTIONS["fetch_max_wait_ms"])
SESSION = int(KAFKA_OPTIONS["session_timeout_ms"])
PARTITIONS = int(KAFKA_OPTIONS["partitions"])


@contextlib.asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _send(producer: AIOKafkaProducer, topic: str, p: Payload, **kw: object) -> None:
    await (await producer.send(topic, encode(p), **kw))


async def consume_loop(
    bootstrap: str,
    topics: list[str],
    handle: Handle,
    concurrency: int,
    stop: asyncio.Event,
    read_ahead: int = 2000,
) -> None:
    """One group member on ``topics`` until ``stop`` is set (see the module)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT,
        session_timeout_ms=SESSION,
        heartbeat_interval_ms=SESSION // 3,
    )
    slots = {t: asyncio.Semaphore(concurrency) for t in topics}

    async def one(topic: str, value: bytes) -> None:
        async with slots[topic]:
            await handle(topic, decode_payload(value))

    await consumer.start()
    pending: deque[tuple[asyncio.Future[list[None]], dict[object, int], int]] = deque()
    in_flight = 0
    try:
        while not stop.is_set():
            while pending and (pending[0][0].done() or in_flight >= read_ahead):
                batch, offsets, size = pending.popleft()
                await batch
                in_flight -= size
                await consumer.commit(offsets)
            batches = await consumer.getmany(timeout_ms=50, max_records=500)
            if not batches:
                continue
            tasks = [one(tp.topic, r.value) for tp, records in batches.items() for r in records]
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            pending.append((asyncio.gather(*tasks), offsets, len(tasks)))
            in_flight += len(tasks)
    finally:
        for batch, _, _ in pending:
            batch.cancel()
        await asyncio.gather(*(batch for batch, _, _ in pending), return_exceptions=True)
        await consumer.stop()


class KafkaRaw:
    name = "aiokafka"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def _create(self, topics: list[str], partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
        finally:
            await admin.close()

    async def publish(self, topic: str, items: list[Payload], window: int) -> float:
        await self._create([topic], PARTITIONS)
        async with _producer(self.bootstrap) as producer:
            await _send(producer, topic, Payload(-1, 0.0, False, ""))

            async def send(p: Payload) -> None:
                await _send(producer, topic, p)

            return await drive.timed_publish(items, window, send)

    async def consume(self, job: ConsumeJob) -> float:
        topics = list(job.loads)
        await self._create(topics, job.partitions or PARTITIONS)
        async with _producer(self.bootstrap) as producer:
            pairs = job.interleaved()

            async def send(i: int) -> None:
                await _send(producer, *pairs[i])

            await drive.calls_in_flight(len(pairs), WINDOW, send)
        tracker = Tracker(job.loads, job.expected, job.work)
        handle: Handle = tracker.handle
        if job.retry:

            async def handle(topic: str, p: Payload) -> None:
                await drive.retry_in_place(lambda x: tracker.handle(topic, x), p)

        stop = asyncio.Event()
        read_ahead = max(2000, 2 * len(topics) * job.concurrency)
        loop = asyncio.create_task(
            consume_loop(self.bootstrap, topics, handle, job.concurrency, stop, read_ahead)
        )
        try:
            return await tracker.run(job.timeout)
        finally:
            stop.set()
            await loop

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        topic, inbox = f"rr.{uid()}", f"inbox.{uid()}"
        await self._create([topic], PARTITIONS)
        await self._create([inbox], 1)
        pending: dict[bytes, asyncio.Future[Payload]] = {}
        stop = asyncio.Event()
        async with _producer(self.bootstrap) as producer, _producer(self.bootstrap) as answers:

            async def respond(_: str, p: Payload, headers: dict[str, bytes]) -> None:
                await noop(p)
                await _send(answers, headers["reply-to"].decode(), p, headers=list(headers.items()))

            replies = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, fetch_max_wait_ms=FETCH_WAIT
            )
            await replies.start()
            from aiokafka import TopicPartition

            replies.assign([TopicPartition(inbox, 0)])
            await replies.seek_to_end(TopicPartition(inbox, 0))

            async def read_replies() -> None:
                while not stop.is_set():
                    batches = await replies.getmany(timeout_ms=50)
                    for records in batches.values():
                        for r in records:
                            cid = dict(r.headers).get("cid", b"")
                            future = pending.pop(cid, None)
                            if future is not None and not future.done():
                                future.set_result(decode_payload(r.value))

            responder = asyncio.create_task(_responder(self.bootstrap, topic, respond, stop))
            reader = asyncio.create_task(read_replies())

            async def call(i: int) -> None:
                cid = uuid.uuid4().hex.encode()
                future = asyncio.get_running_loop().create_future()
                pending[cid] = future
                headers = [("reply-to", inbox.encode()), ("cid", cid)]
                await _send(producer, topic, size_items[i % len(size_items)], headers=headers)
                await asyncio.wait_for(future, 60.0 if i < 0 else 30.0)

            try:
                await call(-1)
                return await drive.calls_in_flight(n, in_flight, call)
            finally:
                stop.set()
                await asyncio.gather(responder, reader, return_exceptions=True)
                await replies.stop()

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        await self._create([topic], PARTITIONS)
        latencies = Latencies(len(items))
        stop = asyncio.Event()
        loop = asyncio.create_task(
            consume_loop(self.bootstrap, [topic], latencies.handle, 16, stop)
        )
        try:
            async with _producer(self.bootstrap) as producer:

                async def warm() -> None:
                    await _send(producer, topic, Payload(-1, 0.0, False, ""))

                await drive.warm_until(latencies.warm, warm, 60.0)

                async def send(p: Payload) -> None:
                    await _send(producer, topic, p)

                await drive.fixed_rate(items, rate, send)
                await asyncio.wait_for(latencies.done.wait(), 60.0)
        finally:
            stop.set()
            await loop
        return latencies.samples


async def _responder(
    bootstrap: str,
    topic: str,
    respond: Callable[[str, Payload, dict[str, bytes]], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """A group member answering requests, 32 at a time; commits each batch when done."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-rr-{uid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT,
        session_timeout_ms=SESSION,
        heartbeat_interval_ms=SESSION // 3,
    )
    slots = asyncio.Semaphore(32)

    async def one(value: bytes, headers: dict[str, bytes]) -> None:
        async with slots:
            await respond(topic, decode_payload(value), headers)

    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=500)
            if batches:
                await asyncio.gather(
                    *(
                        one(r.value, dict(r.headers))
                        for records in batches.values()
                        for r in records
                    )
                )
                await consumer.commit(
                    {tp: records[-1].offset + 1 for tp, records in batches.items()}
                )
    finally:
        await consumer.stop()

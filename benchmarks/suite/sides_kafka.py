"""The raw side on Kafka: aiokafka as one would write it for throughput, doing the bus's
work. A producer with acks=all (callers each await their own send's future; a batch is
sent whole, then its futures awaited together). A consumer group member whose fetch loop
feeds ``getmany`` batches to a fixed pool of workers through a bounded queue (the same
read-ahead as the bus's), each worker decoding into the same Struct and awaiting the
handler; offsets are committed on a timer (the bus's ``commit_interval_ms``), each
partition up to the first record not yet handled. Request-reply: a request topic served
by such a member with 32 workers, each reply sent (acks=all) before the request counts
as handled; replies read from a one-partition inbox topic of the requester's own,
matched to a future per call by a correlation header."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.suite import drive
from benchmarks.suite.brokers import KAFKA_OPTIONS
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import WARM, Payload, decode, encode, noop
from benchmarks.suite.track import Latencies, Tracker

FETCH_WAIT = int(KAFKA_OPTIONS["fetch_max_wait_ms"])
SESSION = int(KAFKA_OPTIONS["session_timeout_ms"])
PARTITIONS = int(KAFKA_OPTIONS["partitions"])
READ_AHEAD = int(KAFKA_OPTIONS["read_ahead"])
COMMIT_EVERY = int(KAFKA_OPTIONS["commit_interval_ms"]) / 1000
OnRecord = Callable[[ConsumerRecord], Awaitable[None]]


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


class _Batch:
    """The records of one partition from one ``getmany``: how many are still unhandled,
    and the offset to commit once none are."""

    __slots__ = ("end", "left")

    def __init__(self, left: int, end: int) -> None:
        self.left, self.end = left, end


@contextlib.asynccontextmanager
async def member(
    bootstrap: str, topics: list[str], on_record: OnRecord, workers: int,
    read_ahead: int = READ_AHEAD,
) -> AsyncIterator[AIOKafkaConsumer]:  # fmt: skip
    """One group member on ``topics``, joined when entered, running until exited (see
    the module docstring). ``on_record`` raising stops nothing: the record counts as
    handled (the callers here handle their own failures)."""
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
    queue: asyncio.Queue[tuple[_Batch, ConsumerRecord]] = asyncio.Queue(read_ahead)
    batches: dict[TopicPartition, deque[_Batch]] = {}

    async def fetch() -> None:
        while True:
            room = max(1, read_ahead - queue.qsize())
            got = await consumer.getmany(timeout_ms=100, max_records=room)
            for tp, records in got.items():
                batch = _Batch(len(records), records[-1].offset + 1)
                batches.setdefault(tp, deque()).append(batch)
                for record in records:
                    await queue.put((batch, record))

    async def work() -> None:
        while True:
            batch, record = await queue.get()
            try:
                await on_record(record)
            finally:
                batch.left -= 1

    async def commit() -> None:
        while True:
            await asyncio.sleep(COMMIT_EVERY)
            offsets = {}
            for tp, pending in batches.items():
                while pending and pending[0].left == 0:
                    offsets[tp] = pending.popleft().end
            if offsets:
                await consumer.commit(offsets)

    await consumer.start()  # returns once assigned
    tasks = [asyncio.create_task(fetch()), asyncio.create_task(commit())]
    tasks += [asyncio.create_task(work()) for _ in range(workers)]
    try:
        yield consumer
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()


class KafkaRaw:
    name = "aiokafka"
    profiled = False

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def _create(self, topics: list[str], partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
        finally:
            await admin.close()

    async def publish_one(self, topic: str, items: list[Payload], callers: int) -> float:
        await self._create([topic], PARTITIONS)
        async with _producer(self.bootstrap) as producer:
            await _send(producer, topic, WARM)

            async def send(i: int) -> None:
                await (await producer.send(topic, encode(items[i])))

            return await drive.calls_in_flight(len(items), callers, send)

    async def publish_batch(self, topic: str, items: list[Payload], size: int) -> float:
        await self._create([topic], PARTITIONS)
        async with _producer(self.bootstrap) as producer:
            await _send(producer, topic, WARM)

            async def send(batch: list[Payload]) -> None:
                await asyncio.gather(*[await producer.send(topic, encode(p)) for p in batch])

            return await drive.timed_batches(items, size, send)

    async def consume(self, job: ConsumeJob) -> float:
        topics = list(job.loads)
        await self._create(topics, job.partitions or PARTITIONS)
        tracker = Tracker(job.loads, job.expected, job.work)
        if job.retry:

            async def on_record(r: ConsumerRecord) -> None:
                await drive.retry_in_place(lambda x: tracker.handle(r.topic, x), decode(r.value))

        else:

            async def on_record(r: ConsumerRecord) -> None:
                await tracker.handle(r.topic, decode(r.value))

        read_ahead = max(READ_AHEAD, 2 * job.workers)
        # The bus runs one member (group) per subscription with its own pool: so here.
        async with contextlib.AsyncExitStack() as stack:
            for topic in topics:
                await stack.enter_async_context(
                    member(self.bootstrap, [topic], on_record, job.workers, read_ahead)
                )
            async with _producer(self.bootstrap) as producer:
                pairs = job.interleaved()

                async def send(i: int) -> None:
                    await _send(producer, *pairs[i])

                await drive.calls_in_flight(len(pairs), drive.PRELOAD, send)
                return await tracker.run(job.timeout)

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        topic, inbox = f"rr.{uid()}", f"inbox.{uid()}"
        await self._create([topic], PARTITIONS)
        await self._create([inbox], 1)
        pending: dict[bytes, asyncio.Future[Payload]] = {}
        loop = asyncio.get_running_loop()
        async with (
            _producer(self.bootstrap) as requests,
            _producer(self.bootstrap) as answers,
        ):

            async def respond(r: ConsumerRecord) -> None:
                p = decode(r.value)
                await noop(p)
                headers = dict(r.headers)
                await (
                    await answers.send(
                        headers["reply-to"].decode(), encode(p), partition=0,
                        headers=[("cid", headers["cid"])],
                    )
                )  # fmt: skip

            replies = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, fetch_max_wait_ms=FETCH_WAIT
            )
            await replies.start()
            inbox_tp = TopicPartition(inbox, 0)
            replies.assign([inbox_tp])
            await replies.seek_to_end(inbox_tp)

            async def read_replies() -> None:
                while True:
                    got = await replies.getmany(timeout_ms=100)
                    for records in got.values():
                        for r in records:
                            future = pending.pop(dict(r.headers).get("cid", b""), None)
                            if future is not None and not future.done():
                                future.set_result(decode(r.value))

            reader = asyncio.create_task(read_replies())
            header_inbox = ("reply-to", inbox.encode())

            async def call(i: int) -> None:
                cid = uuid.uuid4().hex.encode()
                future: asyncio.Future[Payload] = loop.create_future()
                pending[cid] = future
                try:
                    body = encode(items[i % len(items)])
                    await (await requests.send(topic, body, headers=[header_inbox, ("cid", cid)]))
                    await asyncio.wait_for(future, 60.0 if i < 0 else 30.0)
                finally:
                    pending.pop(cid, None)

            try:
                async with member(self.bootstrap, [topic], respond, 32):
                    await call(-1)
                    return await drive.calls_in_flight(n, in_flight, call)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await replies.stop()

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        await self._create([topic], PARTITIONS)
        latencies = Latencies(len(items))

        async def on_record(r: ConsumerRecord) -> None:
            await latencies.handle(topic, decode(r.value))

        async with (
            member(self.bootstrap, [topic], on_record, 16),
            _producer(self.bootstrap) as producer,
        ):

            async def warm() -> None:
                await _send(producer, topic, WARM)

            await drive.warm_until(latencies.warm, warm, 60.0)

            async def send(p: Payload) -> None:
                await _send(producer, topic, p)

            await drive.fixed_rate(items, rate, send)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
        return latencies.samples

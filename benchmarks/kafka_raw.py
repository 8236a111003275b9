"""Raw aiokafka doing the benchmark's work by hand, and a tansu broker of its own.

The baseline the Kafka adapter is measured against: the same msgspec decode into the
same Struct, the same awaited handler, commits per batch, replies on a reply topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

OPTIONS = "fetch_max_wait_ms=5&session_timeout_ms=1500&partitions=4&commit_interval_ms=100"
PARTITIONS = 4
FETCH_MAX_WAIT_MS = 5


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create(servers: str, *topics: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def producer(servers: str) -> AIOKafkaProducer:
    p = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await p.start()
    return p


async def publish(p: AIOKafkaProducer, topic: str, values: list[bytes], window: int) -> None:
    """Send ``values``, ``window`` at a time, each window awaited until acked."""
    for start in range(0, len(values), window):
        futures = [await p.send(topic, v) for v in values[start : start + window]]
        await asyncio.gather(*futures)


async def consume(
    servers: str,
    topic: str,
    kind: type[Any],
    handler: Callable[[Any], Awaitable[None]],
    n: int,
) -> float:
    """Read ``n`` records as one group member: decode, await the handler, commit per
    batch. Returns records/s from the first record to the last."""
    decoder = msgspec.json.Decoder(kind)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=unique("raw"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=1500,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen = 0
    started = 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            if batches and not started:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    await handler(decoder.decode(record.value))
                    seen += 1
            if batches:
                await consumer.commit()
        return (n - 1) / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class Responder:
    """A group member answering requests: reply to the topic in the reply-to header."""

    def __init__(self, servers: str, topic: str, kind: type[Any], answer: Any) -> None:
        self.servers, self.topic = servers, topic
        self.decoder = msgspec.json.Decoder(kind)
        self.answer = answer
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.producer = await producer(self.servers)
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.servers,
            group_id=unique("raw-rr"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=1500,
            heartbeat_interval_ms=500,
        )
        await self.consumer.start()  # returns once assigned
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        encode = msgspec.json.encode
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000, max_records=500)
            sent = []
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers)
                    reply = await self.answer(self.decoder.decode(record.value))
                    sent.append(
                        await self.producer.send(
                            headers["reply-to"].decode(),
                            encode(reply),
                            headers=[("correlation-id", headers["correlation-id"])],
                        )
                    )
            if batches:
                # Like the bus: a request is committed only once its reply is held.
                await asyncio.gather(*sent)
                await self.consumer.commit()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()
        await self.producer.stop()


class Requester:
    """Requests with a correlation id; replies read from a reply topic of its own."""

    def __init__(self, servers: str, kind: type[Any]) -> None:
        self.servers = servers
        self.decoder = msgspec.json.Decoder(kind)
        self.reply_topic = unique("raw.inbox")
        self.pending: dict[bytes, asyncio.Future[Any]] = {}

    async def start(self) -> None:
        await create(self.servers, self.reply_topic, partitions=1)
        self.producer = await producer(self.servers)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
        )
        await self.consumer.start()
        tp = TopicPartition(self.reply_topic, 0)
        self.consumer.assign([tp])
        await self.consumer.seek_to_beginning(tp)
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    cid = dict(record.headers)["correlation-id"]
                    future = self.pending.pop(cid, None)
                    if future is not None and not future.done():
                        future.set_result(self.decoder.decode(record.value))

    async def request(self, topic: str, payload: Any) -> Any:
        cid = uuid.uuid4().hex.encode()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[cid] = future
        sent = await self.producer.send(
            topic,
            msgspec.json.encode(payload),
            headers=[("reply-to", self.reply_topic.encode()), ("correlation-id", cid)],
        )
        await sent
        return await asyncio.wait_for(future, 10.0)

    async def close(self) -> None:
        self.task.cancel()
        await self.consumer.stop()
        await self.producer.stop()

"""An ephemeral group: one reader of every partition of a topic, with no consumer group.

It reads from the end offsets it found when it started, so it sees what is published
after ``consume(..., ephemeral=True)`` returns, and leaves nothing on the broker: no
group, no commits, no retry or dead-letter topic. A retry waits in memory; a dead letter
is logged and dropped (an ephemeral group has nowhere to park one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import from_record
from adapters.kafka.inbox import retrying_reads
from bus.message import Message

log = logging.getLogger("bus.kafka")


class WatchDelivery:
    """A record seen by an ephemeral group: there is nothing to commit."""

    __slots__ = ("_settled", "_watcher", "message", "redeliveries")

    def __init__(self, watcher: KafkaWatcher, message: Message, redeliveries: int = 0) -> None:
        self._watcher = watcher
        self._settled = False
        self.message = message
        self.redeliveries = redeliveries

    async def ack(self) -> None:
        self._settled = True

    def ack_nowait(self) -> bool:
        self._settled = True
        return True

    def payload(self) -> tuple[bytes, str | None]:
        return self.message.body, self.message.content_type

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        return self.message.headers

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        if not self._settled:
            self._settled = True
            self._watcher.later(self.message.with_headers(dict(headers)), max(0.0, delay))

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        if not self._settled:
            self._settled = True
            log.warning(
                "an ephemeral group has no dead-letter topic: dropped message %s (%s)",
                self.message.id, headers.get("bus-dlq-reason"),
            )  # fmt: skip

    async def give_back(self) -> None:
        # The group's one member is this watcher: the message goes back to its queue.
        if not self._settled:
            self._settled = True
            self._watcher.later(self.message, 0.0, self.redeliveries + 1)


class KafkaWatcher:
    """bus.transport.Consumer for an ephemeral group."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self._topic = topic
        self._client = AIOKafkaConsumer(
            **config.client_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
        )
        self._ready: asyncio.Queue[WatchDelivery | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._stopped = False  # takes nothing more
        self._closed = False

    async def start(self) -> None:
        await self._client.start()
        await self._client.topics()  # metadata, so the partitions are known
        parts = self._client.partitions_for_topic(self._topic) or {0}
        tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
        self._client.assign(tps)
        await self._client.seek_to_end(*tps)
        for tp in tps:  # pin the end offsets now: later records are ours
            await self._client.position(tp)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        retrying = retrying_reads(f"watching {self._topic}")
        while True:
            try:
                batches: dict[TopicPartition, list[Any]] = await retrying(
                    self._client.getmany, timeout_ms=1000
                )
            except ConsumerStoppedError:
                return
            for records in batches.values():
                for record in records:
                    self._ready.put_nowait(WatchDelivery(self, from_record(record)[0]))

    def later(self, message: Message, delay: float, redeliveries: int = 0) -> None:
        loop = asyncio.get_running_loop()

        def due() -> None:
            self._timers.discard(handle)
            if not self._stopped:
                self._ready.put_nowait(WatchDelivery(self, message, redeliveries))

        handle = loop.call_later(delay, due)
        self._timers.add(handle)

    def __aiter__(self) -> KafkaWatcher:
        return self

    def poll(self) -> WatchDelivery | None:
        if self._stopped or self._ready.empty():
            return None
        delivery = self._ready.get_nowait()
        if delivery is None:
            self._ready.put_nowait(None)
            return None
        return delivery

    async def __anext__(self) -> WatchDelivery:
        if self._stopped:
            raise StopAsyncIteration
        delivery = await self._ready.get()
        if delivery is None or self._stopped:
            self._ready.put_nowait(None)  # wake any other reader too
            raise StopAsyncIteration
        return delivery

    async def stop_fetching(self) -> None:
        """Read no more. What was read and not handed out is dropped, as are retries
        still waiting: an ephemeral group ends with its one member, nobody else gets them."""
        if self._stopped:
            return
        self._stopped = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._ready.put_nowait(None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_fetching()
        for handle in self._timers:  # retries settled since: due to nobody
            handle.cancel()
        self._timers.clear()
        await self._client.stop()

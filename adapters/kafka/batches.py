"""Concurrent sends share record batches: the bus's way to publish one message at a time
at the raw client's speed.

aiokafka's ``send`` costs a coroutine chain, a metadata check, a partitioner call, a
future and a RecordMetadata per record; services publish one message per call from many
tasks at once. Here a call only appends its record to a queue and awaits a future of its
own. One flusher per partition fills a record batch (aiokafka's ``create_batch``) from
what is queued when it runs, hands it over with ``send_batch``, and settles every caller
of the batch from the batch's one future. Whatever callers queue while a batch waits for
the one before it goes in the next: the shape aiokafka's accumulator has (one request
in flight and one batch filling per partition), without its per-record costs.

Where a record goes is what aiokafka's default partitioner would choose: a keyed record
to ``murmur2(key) % partitions`` (the same partition as any Kafka client's), an unkeyed
one to whichever partition with a leader is free first (Kafka's sticky partitioning
does the same, for the same reason: fuller batches).

A caller's record is sent unless its batch fails; the batch's future is watched by the
producer's deadlines, so a batch the broker never confirms fails its callers with the
producer's timeout. Records queued for one partition keep the order they were queued in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

Record = tuple[bytes, bytes | None, list[tuple[str, bytes]], "asyncio.Future[None]"]
OnBatch = Callable[["asyncio.Future[Any]"], None]


class _Topic:
    __slots__ = ("lanes", "order", "parts", "turn", "unkeyed")

    def __init__(self) -> None:
        self.unkeyed: deque[Record] = deque()
        self.lanes: dict[int, _Lane] = {}
        self.order: list[_Lane] = []  # the lanes in partition order
        self.parts: list[int] = []
        self.turn = 0  # the lane woken first for unkeyed records: the next after the last


class _Lane:
    """One partition: its keyed records, its flusher and the future it idles on."""

    __slots__ = ("idle", "index", "keyed", "partition", "task")

    def __init__(self, partition: int, index: int) -> None:
        self.partition = partition
        self.index = index
        self.keyed: deque[Record] = deque()
        self.idle: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Batches:
    """The shared batches of one producer. ``add`` returns the caller's future, or None
    when the topic's partitions (or the partition asked for) are not known yet: the
    caller sends the slow way, which waits for them."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        watch: OnBatch,
        failed: Callable[[str, BaseException], BaseException],
    ) -> None:
        self._producer = producer
        self._cluster = producer.client.cluster
        self._watch = watch
        self._failed = failed  # the bus error for a batch that failed, by topic
        self._topics: dict[str, _Topic] = {}
        self._closed = False

    def add(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[None] | None:
        state = self._topics.get(topic)
        if state is None or not state.lanes:
            state = self._start(topic)
            if state is None:
                return None
        future: asyncio.Future[None]
        if key is None and partition is None:
            future = asyncio.get_running_loop().create_future()
            unkeyed = state.unkeyed
            unkeyed.append((value, key, headers, future))
            # A lane idles only once it found its queues empty, so only the first record
            # queued since then needs to wake them.
            if len(unkeyed) == 1:
                order, turn = state.order, state.turn
                for i in range(len(order)):  # the lane whose turn it is runs first
                    _wake(order[(turn + i) % len(order)])
            return future
        if partition is None:  # keyed: where the default partitioner puts it
            parts = state.parts
            partition = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        lane = state.lanes.get(partition)  # or the caller's (a reply topic's one partition)
        if lane is None:
            return None
        future = asyncio.get_running_loop().create_future()
        lane.keyed.append((value, key, headers, future))
        if len(lane.keyed) == 1:
            _wake(lane)
        return future

    def _start(self, topic: str) -> _Topic | None:
        if self._closed:
            return None
        known = self._cluster.partitions_for_topic(topic)
        if not known:
            return None
        state = self._topics.setdefault(topic, _Topic())
        state.parts = list(known)  # aiokafka's own order for its partitioner
        for index, partition in enumerate(state.parts):
            lane = state.lanes[partition] = _Lane(partition, index)
            state.order.append(lane)
            lane.task = asyncio.get_running_loop().create_task(self._flush(topic, state, lane))
        return state

    async def _flush(self, topic: str, state: _Topic, lane: _Lane) -> None:
        producer, cluster = self._producer, self._cluster
        loop = asyncio.get_running_loop()
        while True:
            if not lane.keyed and not state.unkeyed:
                if self._closed:
                    return
                lane.idle = loop.create_future()
                await lane.idle
                continue
            batch = producer.create_batch()
            taken: list[asyncio.Future[None]] = []
            _fill(batch, lane.keyed, taken)
            if state.unkeyed:
                available = cluster.available_partitions_for_topic(topic)
                if available is None or lane.partition in available:
                    before = len(taken)
                    _fill(batch, state.unkeyed, taken)
                    if len(taken) > before:  # the next batch of them goes elsewhere
                        state.turn = (lane.index + 1) % len(state.order)
            if not taken:
                # Unkeyed records wait for a partition with a leader; this one has none.
                lane.idle = loop.create_future()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await lane.idle
                continue
            try:
                sent = await producer.send_batch(batch, topic, partition=lane.partition)
            except asyncio.CancelledError:
                _fail(taken, self._failed(topic, ProducerClosing()))
                raise
            except Exception as exc:
                _fail(taken, self._failed(topic, exc))
                continue
            # The deadline is watched on a future of our own: send_batch's is a shield,
            # which raises InvalidStateError in the loop when the client fails the batch
            # in the turn the deadline failed it.
            confirmed: asyncio.Future[None] = loop.create_future()
            sent.add_done_callback(functools.partial(_relay, confirmed))
            self._watch(confirmed)
            confirmed.add_done_callback(functools.partial(self._settle, topic, taken=taken))

    def _settle(
        self, topic: str, done: asyncio.Future[Any], *, taken: list[asyncio.Future[None]]
    ) -> None:
        if done.cancelled():
            _fail(taken, self._failed(topic, ProducerClosing()))
            return
        exc = done.exception()
        if exc is not None:
            _fail(taken, self._failed(topic, exc))
            return
        for future in taken:
            if not future.done():
                future.set_result(None)

    async def close(self, timeout: float) -> None:
        """Send what is queued (waiting up to ``timeout``), then stop the flushers; a
        record still queued then fails its caller."""
        self._closed = True
        tasks = [la.task for s in self._topics.values() for la in s.lanes.values() if la.task]
        for state in self._topics.values():
            for lane in state.lanes.values():
                _wake(lane)
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=timeout)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        for topic, state in self._topics.items():
            left = [r[3] for r in state.unkeyed]
            left += [r[3] for la in state.lanes.values() for r in la.keyed]
            _fail(left, self._failed(topic, ProducerClosing()))
        self._topics.clear()

    def forget(self, topic: str) -> None:
        """The topic was made again: if its partitions changed, its lanes are made anew at
        the next send, and records queued for a partition fail (their callers' publishes
        raise, as for any send not confirmed); unkeyed ones stay queued."""
        state = self._topics.get(topic)
        if state is None:
            return
        known = self._cluster.partitions_for_topic(topic)
        if known is None or list(known) == state.parts:
            return
        for lane in state.order:
            if lane.task is not None:
                lane.task.cancel()
            _fail([r[3] for r in lane.keyed], self._failed(topic, PartitionsChanged()))
        state.lanes.clear()
        state.order.clear()
        self._start(topic)
        for lane in state.order:
            _wake(lane)


class PartitionsChanged(Exception):
    def __str__(self) -> str:
        return "the topic's partitions changed while the message waited to be sent"


class ProducerClosing(Exception):
    """The producer stopped before a queued record was handed to the client."""

    def __str__(self) -> str:
        return "the producer was closed before the message was sent"


def _fill(batch: Any, queue: deque[Record], taken: list[asyncio.Future[None]]) -> None:
    """Move records from ``queue`` into ``batch`` until it is full; a record that does not
    fit stays first in the queue for the next batch. The first record of an empty batch
    always fits (aiokafka grows it), so a large record is sent alone."""
    while queue:
        value, key, headers, future = queue[0]
        if future.cancelled():  # its caller gave up before it was sent: drop it
            queue.popleft()
            continue
        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
            return
        queue.popleft()
        taken.append(future)


def _relay(confirmed: asyncio.Future[None], sent: asyncio.Future[Any]) -> None:
    """The outcome of a sent batch onto ``confirmed``, unless its deadline came first."""
    exc = None if sent.cancelled() else sent.exception()  # retrieved either way
    if confirmed.done():
        return
    if sent.cancelled():
        confirmed.cancel()
    elif exc is not None:
        confirmed.set_exception(exc)
    else:
        confirmed.set_result(None)


def _wake(lane: _Lane) -> None:
    idle = lane.idle
    if idle is not None and not idle.done():
        idle.set_result(None)


def _fail(futures: list[asyncio.Future[None]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)

"""One member of a consumer group on a topic and on its group's retry topic.

A fetch loop reads ahead (up to ``read_ahead`` records) into a ready queue; records from
the retry topic wait on a timer until they are due. ``poll``/``__anext__`` hand records
out in the order read, so one partition's records go out in offset order. Offsets are
committed per partition up to the first record not yet settled (see offsets.py):
periodically, on revocation and on close. On revocation the partition's unread records
are dropped and the rebalance waits until its handed-out records are settled (the rest
of the group waits too, up to the broker's rebalance timeout), so no two members handle
one record at once; closing ends that wait and leaves what is unsettled to the next owner.
Before a batch is handed out its partitions' handed-out marks are committed (marks.py),
so whoever gets a record after this member dies holding it counts a redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import from_record
from adapters.kafka.delivery import KafkaDelivery
from adapters.kafka.marks import Marks
from adapters.kafka.offsets import PartitionOffsets
from bus.message import Message

log = logging.getLogger("bus.kafka")

Resend = Callable[[Message, float | None], Awaitable[None]]
"""Produce a copy: to the retry topic due in ``delay`` seconds, or (None) to the DLQ."""


class Partition:
    """One assignment of one partition to this member; dead once revoked."""

    __slots__ = (
        "committed",
        "fetched",
        "handed",
        "held",
        "known",
        "live",
        "mark",
        "offsets",
        "redone",
        "timers",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.live = True
        self.offsets = PartitionOffsets()
        self.held = 0  # handed out, not settled
        self.committed = -1
        self.timers: dict[int, asyncio.TimerHandle] = {}  # retry records not yet due
        self.known = False  # the marks below were read (before the first record is)
        self.redone = 0  # records below this offset were read by an earlier owner
        self.mark = 0  # the handed-out mark committed for this partition
        self.handed = -1  # the highest offset handed out by this member
        self.fetched = 0  # one past the highest offset fetched


Item = tuple[Partition, int, Message]  # partition, offset, message

LEARN_TIMEOUT = 5.0  # seconds an assignment may spend reading marks and start offsets


class KafkaConsumer:
    """bus.transport.Consumer for one group member (see the module)."""

    def __init__(
        self,
        config: KafkaConfig,
        topics: list[str],
        group: str,
        resend: Resend,
        on_close: Callable[[KafkaConsumer], None],
    ) -> None:
        self._config = config
        self._topics = topics
        self.group = group
        self.resend = resend
        self._on_close = on_close
        self._marks = Marks(config, group)
        self._claiming: asyncio.Task[None] | None = None  # a mark claimed ahead of need
        # How far past what was fetched a mark is claimed: two read-ahead windows, so a
        # claim started half way (one window before it is needed) lands in time even in
        # a burst on a busy loop (a commit took ~3 ms there).
        self._stride = 2 * config.read_ahead
        self._client = AIOKafkaConsumer(
            **config.client_options(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
        )
        self._ready: deque[Item] = deque()
        # Workers waiting for a record, oldest first: a record wakes one of them, not all
        # (a shared Event woke every idle worker of the pool for each small fetch).
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room = asyncio.Event()
        self._low_water = config.read_ahead // 2
        self._waiting = 0  # retry records on timers
        self._paused: set[TopicPartition] = set()  # retry partitions, while many wait
        self._parts: dict[TopicPartition, Partition] = {}  # assigned now
        self._settled = asyncio.Event()
        self._dirty = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self.assigned = asyncio.Event()
        """Set once this member was first given partitions (tests wait on it)."""

    async def start(self) -> None:
        await self._marks.start()
        await self._client.start()
        self._client.subscribe(self._topics, listener=_Listener(self))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._fetch()), loop.create_task(self._commit_loop())]

    # -- handing out ---------------------------------------------------------------

    def __aiter__(self) -> KafkaConsumer:
        return self

    def poll(self) -> KafkaDelivery | None:
        """The next delivery if one is at hand, else None (the core's fast path)."""
        ready = self._ready
        while ready:
            part, offset, message = ready.popleft()
            if not part.live:
                continue
            part.held += 1
            if offset > part.handed:
                part.handed = offset
            if len(ready) <= self._low_water:
                self._room.set()
            return KafkaDelivery(self, part, offset, message, 1 if offset < part.redone else 0)
        return None

    async def __anext__(self) -> KafkaDelivery:
        while True:
            delivery = self.poll()
            if delivery is not None:
                return delivery
            if self._closed:
                raise StopAsyncIteration
            self._room.set()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # woken, then cancelled: the record goes to another
                else:
                    with contextlib.suppress(ValueError):
                        self._idle.remove(waiter)
                raise

    def _wake(self, n: int) -> None:
        """Wake up to ``n`` idle workers."""
        idle = self._idle
        while n > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def settle(self, part: Partition, offset: int) -> None:
        """A handed-out record is done with (acked, retried or dead-lettered)."""
        if not part.live:
            return  # revoked meanwhile: its next owner gets it again
        part.offsets.settle(offset)
        part.held -= 1
        self._dirty = True
        if not part.held:
            self._settled.set()

    # -- reading -------------------------------------------------------------------

    async def _fetch(self) -> None:
        limit = self._config.read_ahead
        backoff = 0.05
        while not self._closed:
            buffered = len(self._ready)
            if buffered > self._low_water:  # refill in batches, not one by one
                self._room.clear()
                await self._room.wait()
                continue
            try:
                batches = await self._client.getmany(timeout_ms=1000, max_records=limit - buffered)
            except ConsumerStoppedError:
                return
            except Exception as exc:  # aiokafka reconnects; this loop must not die
                log.warning("fetch from %s failed, retrying: %s", self._topics[0], exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            if batches:
                await self._mark(batches)
                self._accept(batches)

    async def _mark(self, batches: dict[TopicPartition, list[object]]) -> None:
        """Learn the marks of newly read partitions, then commit the marks this batch
        needs, before any of its records is handed out (see marks.py)."""
        parts = self._parts
        unknown = [tp for tp in batches if tp in parts and not parts[tp].known]
        if unknown:
            self._know(await self._marks.read(unknown))
        # Claimed ahead (see marks.py and _stride) for every partition at once, and again
        # in the background once a batch comes within half a stride of the mark, so a
        # batch seldom waits: an awaited commit per batch (~0.2 ms of CPU, a round trip,
        # ~3 ms on a busy loop) cost 10-40% of consume throughput.
        stride = self._stride
        needed = soon = False
        for tp, records in batches.items():
            part = parts.get(tp)
            if part is not None and records:
                end: int = records[-1].offset + 1  # type: ignore[attr-defined]
                if end > part.fetched:
                    part.fetched = end
                if end > part.mark:
                    needed = True
                elif end + stride // 2 > part.mark:
                    soon = True
        if needed:
            await self._claimed()  # the claim in flight may cover this batch already
            if any(
                (part := parts.get(tp)) is not None and part.fetched > part.mark for tp in batches
            ):
                self._start_claim()
                await self._claimed()
        elif soon and self._claiming is None:
            self._start_claim()

    def _know(
        self, marks: dict[TopicPartition, int], starts: dict[TopicPartition, int] | None = None
    ) -> None:
        """Take the marks read for partitions not yet known (and, from an assignment,
        where their fetching starts); a partition known meanwhile keeps what it has."""
        for tp, mark in marks.items():
            part = self._parts.get(tp)
            if part is None or part.known:
                continue  # revoked again, or learnt the other way first
            part.known, part.redone, part.mark = True, mark, mark
            start = (starts or {}).get(tp, 0)
            if start > part.fetched:
                part.fetched = start

    def _start_claim(self) -> None:
        """Claim a window past what was fetched on every partition, in a task of its own
        (the one ``_claimed`` waits for, so a member leaving always commits its final
        marks after every claim)."""
        if self._closed:
            return  # the final marks are being written; a claim now would undo them
        stride = self._stride
        marks = {
            tp: part.fetched + stride
            for tp, part in self._parts.items()
            if part.known and part.fetched + stride > part.mark
        }
        task = asyncio.get_running_loop().create_task(self._claim(marks))
        self._claiming = task
        task.add_done_callback(self._claim_done)

    async def _claim(self, marks: dict[TopicPartition, int]) -> None:
        if await self._marks.commit(marks):
            for tp, mark in marks.items():
                if (part := self._parts.get(tp)) is not None:
                    part.mark = max(part.mark, mark)

    def _claim_done(self, task: asyncio.Task[None]) -> None:
        if self._claiming is task:
            self._claiming = None

    async def _claimed(self) -> None:
        """Wait for the background claim, if one is in flight (whatever its end)."""
        task = self._claiming
        if task is not None and not task.done():
            await asyncio.wait([task])

    async def _leave_marks(self, parts: list[Partition]) -> None:
        """Leaving cleanly: lower each mark to what was really handed out (and what an
        earlier owner had), so the dropped read-ahead, and the window claimed ahead, are
        not counted as delivered."""
        await self._claimed()  # lands before the final marks: one connection, in order
        marks: dict[TopicPartition, int] = {}
        for part in parts:
            if not part.known:
                continue  # its marks were never read, so never claimed either
            position = part.offsets.position  # None: nothing fetched since the start
            final = max(
                part.fetched if position is None else position, part.handed + 1, part.redone
            )
            if final != part.mark:
                marks[part.tp] = final
        await self._marks.commit(marks)

    def _accept(self, batches: dict[TopicPartition, list[object]]) -> None:
        now_ms = time.time() * 1000
        loop = asyncio.get_running_loop()
        ready = self._ready
        for tp, records in batches.items():
            part = self._parts.get(tp)
            if part is None:
                continue
            offsets = part.offsets
            for record in records:
                offset: int = record.offset  # type: ignore[attr-defined]
                try:
                    offsets.take(offset)
                except ValueError:  # the position went back (a reset): start afresh
                    offsets = part.offsets = PartitionOffsets()
                    offsets.take(offset)
                message, due = from_record(record)
                if due is not None and due > now_ms:
                    delay = (due - now_ms) / 1000 + 0.001
                    item = (part, offset, message)
                    part.timers[offset] = loop.call_later(delay, self._release, item)
                    self._waiting += 1
                else:
                    ready.append((part, offset, message))
        if ready:
            self._wake(len(ready))
        if self._waiting >= self._config.read_ahead and not self._paused:
            # Enough retries wait in memory: read no more of the retry topic for now (the
            # main topic keeps flowing).
            self._paused = {tp for tp in self._parts if tp.topic == self._topics[1]}
            self._client.pause(*self._paused)

    def _release(self, item: Item) -> None:
        """A retry record is due: hand it out next."""
        part, offset, _ = item
        self._waiting -= 1
        part.timers.pop(offset, None)
        self._ready.append(item)
        self._wake(1)
        if self._paused and self._waiting <= self._low_water:
            self._client.resume(*(self._paused & self._parts.keys()))
            self._paused = set()

    # -- committing ----------------------------------------------------------------

    async def _commit_loop(self) -> None:
        interval = self._config.commit_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval)
            if self._dirty:
                await self.commit(list(self._parts.values()))

    async def commit(self, parts: list[Partition]) -> None:
        """Commit, for each of ``parts``, the offset below which all is settled."""
        self._dirty = False
        offsets: dict[TopicPartition, int] = {}
        for part in parts:
            position = part.offsets.position
            if position is not None and position > part.committed:
                offsets[part.tp] = position
        if not offsets:
            return
        try:
            await self._client.commit(offsets)
        except Exception as exc:  # a rebalance in progress: next time, or the next owner
            self._dirty = True
            log.debug("commit on %s deferred: %s", self._topics[0], exc)
            return
        for part in parts:
            part.committed = max(part.committed, offsets.get(part.tp, -1))

    # -- rebalancing ---------------------------------------------------------------

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        gone = [self._parts.pop(tp) for tp in partitions if tp in self._parts]
        for part in gone:
            for handle in part.timers.values():
                handle.cancel()
                self._waiting -= 1
            part.timers.clear()
        dropped = {part.tp for part in gone}
        self._ready = deque(item for item in self._ready if item[0].tp not in dropped)
        self._room.set()
        while not self._closed and any(part.held for part in gone):
            self._settled.clear()
            await self._settled.wait()
        await self.commit(gone)
        await self._leave_marks(gone)
        self._marks.own(self._parts)
        for part in gone:
            part.live = False

    async def assigned_now(self, partitions: set[TopicPartition]) -> None:
        if self._closed:
            return  # a join that completed while closing: the final marks are written
        self._paused -= partitions  # a new assignment starts unpaused
        new = [tp for tp in partitions if tp not in self._parts]
        for tp in new:
            self._parts[tp] = Partition(tp)
        self._marks.own(self._parts)
        self.assigned.set()
        if new:
            await self._learn(new)

    async def _learn(self, new: list[TopicPartition]) -> None:
        """Read the new partitions' marks and where their fetching starts, then claim a
        window past that on all of them at once, so no partition's first batch waits on
        a commit of its own. Best effort and bounded: _mark learns what this misses."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEARN_TIMEOUT):
                marks = await self._marks.read(new)
                starts = await asyncio.gather(
                    *(self._client.position(tp) for tp in new), return_exceptions=True
                )
                self._know(
                    marks,
                    {tp: s for tp, s in zip(new, starts, strict=True) if isinstance(s, int)},
                )
                if self._claiming is None:
                    self._start_claim()

    # -- closing -------------------------------------------------------------------

    async def close(self) -> None:
        """Stop consuming; commit what is settled; the rest goes to other members."""
        if self._closed:
            return
        self._closed = True
        self._wake(len(self._idle))
        self._settled.set()
        self._room.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        parts = list(self._parts.values())
        for part in parts:
            for handle in part.timers.values():
                handle.cancel()
        try:
            await self.commit(parts)
            await self._leave_marks(parts)
        finally:
            for part in parts:
                part.live = False
            self._parts.clear()
            self._ready.clear()
            self._on_close(self)
            try:
                await self._client.stop()
            finally:
                await self._marks.stop()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._consumer.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._consumer.assigned_now(set(assigned))

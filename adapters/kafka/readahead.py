"""Records read ahead of the handlers, and the workers waiting for one."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition

from adapters.kafka.partition import Item

REFILL = 64
"""Records per refill at most (see ReadAhead)."""


class ReadAhead:
    """Records read and not yet handed out, oldest first (so one partition's go out in
    offset order), and the idle workers waiting for one.

    Filled in batches: the fetch loop reads up to ``limit`` records, then waits until
    handing out brings them down to ``low_water``, so the broker is not asked record by
    record. A refill is at most ``REFILL`` records (or half the limit, when that is
    less): a refill allocates a few objects per record at once, and hundreds at once set
    off Python's cyclic garbage collector on every refill, full collections included
    (about a tenth of the consume path's time with a refill of 250; see
    benchmarks/RESULTS.md).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.low_water = max(limit // 2, limit - REFILL)
        self.ready: deque[Item] = deque()
        """Oldest first; the member's ``poll`` takes from it directly (``take`` inlined)."""
        # Oldest first: a record wakes one worker, not all (a shared Event woke every
        # idle worker of the pool for each small fetch).
        self._idle: deque[asyncio.Future[None]] = deque()
        self._room = asyncio.Event()
        self.filling = False  # the fetch loop waits in ``room``: ``take`` may wake it
        self._alarm: asyncio.TimerHandle | None = None  # bounds the waits in ``room``

    def __len__(self) -> int:
        return len(self.ready)

    @property
    def full(self) -> bool:
        """Enough is read ahead: fetch no more until it is down to ``low_water``."""
        return len(self.ready) > self.low_water

    def append(self, item: Item) -> None:
        """Add a record after those read (the caller wakes workers)."""
        self.ready.append(item)

    def extend(self, items: list[Item]) -> None:
        """Add records after those read, in order (the caller wakes workers)."""
        self.ready.extend(items)

    def put_back(self, item: Item) -> None:
        """Add a record before all others (one given back), and wake a worker for it."""
        self.ready.appendleft(item)
        self.wake(1)

    def take(self) -> Item | None:
        """The oldest record of a partition still assigned, or None."""
        ready = self.ready
        while ready:
            item = ready.popleft()
            if not item[0].owned:
                continue
            if self.filling and len(ready) <= self.low_water:
                self._room.set()
            return item
        return None

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        """Forget the records of ``tps`` (revoked): their next owner reads them again."""
        gone = set(tps)
        self.ready = deque(item for item in self.ready if item[0].tp not in gone)
        self._room.set()

    def clear(self) -> None:
        self.ready.clear()
        self._room.set()
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    async def wait(self) -> None:
        """Wait, as an idle worker, until woken for a record. Cancel-safe: a wake-up that
        reaches a worker being cancelled passes on to the next."""
        self._room.set()  # a worker waits: whatever was full has room now
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.wake(1)  # woken, then cancelled: the record goes to another
            else:
                with contextlib.suppress(ValueError):
                    self._idle.remove(waiter)
            raise

    def wake(self, n: int) -> None:
        """Wake up to ``n`` idle workers."""
        idle = self._idle
        while n > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def wake_all(self) -> None:
        self.wake(len(self._idle))
        self._room.set()

    async def room(self, timeout: float) -> None:
        """Wait until there may be room to read more, at most ``timeout`` seconds.

        The bound is one alarm left armed across waits, not a timer per wait (this runs
        once per refill): an alarm that rings after the wait it was armed for ended only
        wakes a later wait early, which then finds the read-ahead still full and waits
        again."""
        if not self.full:
            return
        self._room.clear()
        if self._alarm is None:
            self._alarm = asyncio.get_running_loop().call_later(timeout, self._ring)
        self.filling = True
        try:
            await self._room.wait()
        finally:
            self.filling = False

    def _ring(self) -> None:
        self._alarm = None
        self._room.set()

    def room_made(self) -> None:
        """Handing out brought the read-ahead down to ``low_water``: wake the fetch loop."""
        self._room.set()

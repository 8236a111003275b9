"""One group's queue on one topic: ready, blocked-by-key, delayed and dead messages.

Order per key holds at any handler concurrency: while a message of key K is ready or
being handled, later messages of K wait behind it (as SQS FIFO message groups do), and
one that returns to the queue goes back to the front.

Delayed messages (retries) fall due on the broker's clock (``bus.clock``): real time,
or a test's virtual clock, on which a retry is never due before its delay has passed.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from contextlib import nullcontext

import anyio

from bus.clock import REAL, Clock
from bus.errors import PublishError
from bus.message import Message


class Entry:
    __slots__ = ("message", "redeliveries")

    def __init__(self, message: Message, redeliveries: int = 0) -> None:
        self.message = message
        self.redeliveries = redeliveries


class GroupQueue:
    def __init__(
        self, topic: str, group: str, max_len: int, overflow: str, clock: Clock = REAL
    ) -> None:
        self.topic = topic
        self.group = group
        self.max_len = max_len
        self.overflow = overflow
        self.ready: deque[Entry] = deque()
        self.blocked: dict[str, deque[Entry]] = {}
        self.busy_keys: set[str] = set()
        self.size = 0  # ready plus blocked: what counts against max_len
        self.delayed: list[tuple[float, int, Entry]] = []
        self.dead: list[Message] = []
        self._seq = itertools.count()
        self._waiters: deque[anyio.Event] = deque()
        self._room_waiters: deque[anyio.Event] = deque()
        self._now = clock.monotonic
        self._move_on_after = clock.move_on_after

    # -- putting in -------------------------------------------------------------------

    def full(self) -> bool:
        return self.size >= self.max_len

    def check_room(self) -> None:
        if self.overflow == "reject" and self.full():
            raise PublishError(
                f"memory broker refused a message on {self.topic!r}: group {self.group!r} "
                f"already holds {self.size} (max_queue={self.max_len})"
            )

    async def wait_for_room(self) -> None:
        while self.full():
            event = anyio.Event()
            self._room_waiters.append(event)
            await event.wait()

    def put(self, entry: Entry) -> None:
        """Append ``entry`` behind any message of its key; wake a consumer."""
        key = entry.message.key
        self.size += 1
        if key is not None:
            if key in self.busy_keys:
                self.blocked.setdefault(key, deque()).append(entry)
                return
            self.busy_keys.add(key)
        self.ready.append(entry)
        self._wake()

    def put_back(self, entries: list[Entry]) -> None:
        """Return unsettled entries, oldest first, to the front; their keys stay busy."""
        for entry in reversed(entries):
            self.size += 1
            self.ready.appendleft(entry)
            self._wake()

    def put_later(self, entry: Entry, delay: float) -> None:
        heapq.heappush(self.delayed, (self._now() + delay, next(self._seq), entry))
        self._wake()  # a waiter recomputes how long to sleep

    def release(self, key: str | None) -> None:
        """A message of ``key`` was settled: let the next one of that key go."""
        if key is None:
            return
        waiting = self.blocked.get(key)
        if waiting:
            self.ready.append(waiting.popleft())
            if not waiting:
                del self.blocked[key]
            self._wake()
        else:
            self.busy_keys.discard(key)

    # -- taking out -------------------------------------------------------------------

    def _promote_due(self) -> None:
        now = self._now()
        while self.delayed and self.delayed[0][0] <= now:
            self.put(heapq.heappop(self.delayed)[2])

    def try_take(self) -> Entry | None:
        if self.delayed:
            self._promote_due()
        if not self.ready:
            return None
        self.size -= 1
        if self._room_waiters:
            self._room_waiters.popleft().set()
        return self.ready.popleft()

    async def take(self, waiting: set[anyio.Event], closed: list[bool]) -> Entry | None:
        """The next entry, or None once ``closed[0]`` is set. ``waiting`` holds the event
        this call sleeps on, so whoever closes can wake it."""
        while True:
            if closed[0]:
                self._wake()  # pass on any wake-up meant for a live consumer
                return None
            entry = self.try_take()
            if entry is not None:
                return entry
            event = anyio.Event()
            self._waiters.append(event)
            waiting.add(event)
            timeout = self.delayed[0][0] - self._now() if self.delayed else None
            try:
                with self._move_on_after(timeout) if timeout is not None else nullcontext():
                    await event.wait()
            except BaseException:
                # Leaving (cancelled, closing): a wake-up this waiter took, or the duty to
                # watch a delayed entry's due time, passes to another waiter.
                if event.is_set() or self.delayed:
                    self._wake()
                raise
            finally:
                waiting.discard(event)
                if not event.is_set():
                    event.set()  # so _wake skips it

    def wake_if_due(self) -> None:
        """Wake a consumer if a delayed message is due (after a clock moved)."""
        if self.delayed and self.delayed[0][0] <= self._now():
            self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            event = waiters.popleft()
            if not event.is_set():
                event.set()
                return

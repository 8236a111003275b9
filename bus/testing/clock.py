"""VirtualClock: a ``bus.clock.Clock`` whose time moves only when a test moves it.

Sleeps, timeouts and due times register timers; ``advance_to`` moves the time and fires
every timer due by then, in order. Nothing here decides WHEN to move: ``TestBus`` does,
once the bus has nothing left to do at the current instant.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import anyio.lowlevel

# A timer fires when the time reaches its deadline give or take this much: deadlines
# computed as ``now + (due - now)`` may land an ulp off the ``due`` they aim at.
_EPSILON = 1e-9


class Timer:
    """One pending timer; ``cancel`` makes it never fire."""

    __slots__ = ("callback", "cancelled", "deadline", "label")

    def __init__(self, deadline: float, callback: Callable[[], object], label: str) -> None:
        self.deadline = deadline
        self.callback = callback
        self.label = label
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        return f"Timer({self.label} at {self.deadline:g}s)"


class VirtualClock:
    """Time that stands still until ``advance_to``; starts at 0 (monotonic) and at the
    real UNIX time of its creation (``time()``)."""

    virtual = True

    def __init__(self) -> None:
        self._now = 0.0
        self._epoch = time.time()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:g}s, timers={len(self.timers())})"

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    # -- timers ---------------------------------------------------------------------------

    def call_at(self, deadline: float, callback: Callable[[], object], label: str) -> Timer:
        timer = Timer(deadline, callback, label)
        heapq.heappush(self._timers, (deadline, next(self._seq), timer))
        return timer

    def timers(self) -> list[Timer]:
        """The timers still to fire, soonest first."""
        return [t for _, _, t in sorted(self._timers) if not t.cancelled]

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def advance_to(self, when: float) -> int:
        """Move the time to ``when`` (never back) and fire every timer due by then;
        returns how many fired. Woken tasks run once the caller yields."""
        self._now = max(self._now, when)
        fired = 0
        while self._timers and self._timers[0][0] <= self._now + _EPSILON:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                fired += 1
        return fired

    # -- the Clock protocol ---------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        timer = self.call_at(self._now + seconds, woken.set, f"sleep({seconds:g})")
        try:
            await woken.wait()
        finally:
            timer.cancel()

    @contextmanager
    def move_on_after(self, seconds: float | None) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope()
        timer = None
        if seconds is not None:
            timer = self.call_at(self._now + seconds, scope.cancel, f"move_on_after({seconds:g})")
        try:
            with scope:
                yield scope
        finally:
            if timer is not None:
                timer.cancel()

    @asynccontextmanager
    async def timeout(self, seconds: float | None) -> AsyncIterator[object]:
        # asyncio's own timeout, expired by the virtual timer: the same TimeoutError, the
        # same handling of cancellations that are not ours.
        async with asyncio.timeout(None) as cm:
            timer = None
            if seconds is not None:
                loop = asyncio.get_running_loop()
                timer = self.call_at(
                    self._now + seconds,
                    lambda: cm.reschedule(loop.time()),
                    f"timeout({seconds:g})",
                )
            try:
                yield cm
            finally:
                if timer is not None:
                    timer.cancel()


__all__ = ["Timer", "VirtualClock"]

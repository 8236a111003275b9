"""The clock the core asks for the time, and sleeps and times out on.

Everywhere a wait of the bus is one a test may want to control (a request's timeout, a
request's deadline, a retry's delay on the embedded broker, presence announcements), the
code asks the ``Clock`` its ``Bus`` was built with (``Bus(..., clock=...)``) instead of
calling ``time`` or ``anyio`` itself. ``REAL`` is the default: its methods ARE
``time.monotonic``, ``time.time``, ``anyio.sleep``, ``asyncio.timeout`` and
``anyio.move_on_after``, bound once where they are used, so real time costs nothing
extra on the hot path. ``bus.testing.VirtualClock`` is the other one: time moves only
when a test says so.

Waits that guard the bus itself (close deadlines, settling a message, giving one back,
reconnecting) stay on real time: they protect against a broker that hangs, which a
virtual clock would never notice.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Protocol

import anyio


class Clock(Protocol):
    """What the core asks of a clock. ``virtual`` says whether time moves by itself."""

    @property
    def virtual(self) -> bool: ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for delays and due times)."""
        ...

    def time(self) -> float:
        """UNIX time in seconds (for deadlines written into messages)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """``asyncio.timeout``: the block raises ``TimeoutError`` once ``seconds`` pass."""
        ...

    def move_on_after(self, seconds: float | None) -> AbstractContextManager[anyio.CancelScope]:
        """``anyio.move_on_after``: the block is cancelled, silently, once ``seconds`` pass."""
        ...


class RealClock:
    """Real time: the functions the core would call without a clock, unchanged."""

    virtual = False
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)
    sleep = staticmethod(anyio.sleep)
    timeout = staticmethod(asyncio.timeout)
    move_on_after = staticmethod(anyio.move_on_after)

    def __repr__(self) -> str:
        return "REAL"


REAL: Clock = RealClock()
"""The real clock, every Bus's default."""

__all__ = ["REAL", "Clock", "RealClock"]

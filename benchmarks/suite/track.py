"""Timing a consume: a gate that holds every handler until each topic has delivered its
first message, the preload is done and the read-ahead has had ``SETTLE`` seconds to
fill (so both sides start the clock from the same state), then a count of successful
handlings. Also end-to-end latency samples and their percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable

from benchmarks.suite import profiling
from benchmarks.suite.model import Payload

READY_TIMEOUT = 30.0
SETTLE = 0.3  # seconds after the preload for every side's prefetch / read-ahead to fill
Work = Callable[[Payload], Awaitable[None]]


class Tracker:
    """Gate and counter for one consume run. ``handle`` is what every side calls per
    message (after decoding); it raises what the handler raises."""

    def __init__(self, topics: Iterable[str], expected: int, work: Work, profile: bool = False):
        self._waiting = set(topics)
        self.expected = expected
        self.work = work
        self.profile = profile
        self.count = 0
        self.ready = asyncio.Event()
        self.go = asyncio.Event()
        self.done = asyncio.Event()
        self.started = 0.0
        self.finished = 0.0
        if not self._waiting:
            self.ready.set()

    async def handle(self, topic: str, payload: Payload) -> None:
        if not self.go.is_set():
            self._waiting.discard(topic)
            if not self._waiting:
                self.ready.set()
            await self.go.wait()
        await self.work(payload)
        if payload.seq >= 0:
            self.count += 1
            if self.count == self.expected:
                self.finished = time.perf_counter()
                self.done.set()

    async def run(self, timeout: float) -> float:
        """Call once the preload is done: wait for readiness and the settle time, open
        the gate, wait for the count; return messages/s."""
        # A topic that never delivered by then: its messages still count below.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT)
        await asyncio.sleep(SETTLE)
        with profiling.window(self.profile):
            self.started = time.perf_counter()
            self.go.set()
            await asyncio.wait_for(self.done.wait(), timeout)
        return self.expected / (self.finished - self.started)


class Latencies:
    """End-to-end latencies (seconds) of messages whose ``sent`` is a perf_counter time."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.samples: list[float] = []
        self.warm = asyncio.Event()
        self.done = asyncio.Event()

    async def handle(self, topic: str, payload: Payload) -> None:
        if payload.seq < 0:
            self.warm.set()
            return
        self.samples.append(time.perf_counter() - payload.sent)
        if len(self.samples) >= self.expected:
            self.done.set()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 in milliseconds (``statistics.quantiles``, inclusive method)."""
    cuts = statistics.quantiles(samples, n=1000, method="inclusive")
    return {"p50": cuts[499] * 1000, "p99": cuts[989] * 1000, "p99.9": cuts[998] * 1000}

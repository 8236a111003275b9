"""Timing a consume: a gate that holds every handler until each topic has delivered its
first message (so set-up never counts), then a count of successful handlings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

from benchmarks.suite.model import Payload

READY_TIMEOUT = 30.0
Work = Callable[[Payload], Awaitable[None]]


class Tracker:
    """Gate and counter for one consume run. ``handle`` is what every side calls per
    message (after decoding); it raises what the handler raises."""

    def __init__(self, topics: Iterable[str], expected: int, work: Work) -> None:
        self._waiting = set(topics)
        self.expected = expected
        self.work = work
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
        """Wait for readiness, open the gate, wait for the count; return messages/s."""
        # A topic that never delivered by then: its messages still count below.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT)
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
    """p50, p99, p99.9 in milliseconds (nearest rank)."""
    ordered = sorted(samples)
    out = {}
    for name, q in (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999)):
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        out[name] = ordered[index] * 1000 if ordered else float("nan")
    return out

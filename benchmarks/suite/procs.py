"""The ``processes`` scenario: N messages waiting, then 1..P consumer processes of one
group (benchmarks.suite.worker) share them. Two rates: the whole run, N / (last handled -
first handled) across all processes (start-up and group joins included), and the steady
rate, the slope of the summed count between 20% and 90% of N. Children are this run's
own, ended by closing their stdin, then (if need be) by their pid."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import bus
from benchmarks.suite import drive
from benchmarks.suite.drive import uid
from benchmarks.suite.model import Payload, noop

WINDOW = 200


async def _child(url: str, topic: str, group: str, concurrency: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.suite.worker",
        url,
        topic,
        group,
        str(concurrency),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def run(
    url: str, declares: bool, items: list[Payload], processes: int, concurrency: int, timeout: float
) -> tuple[float, float, list[int]]:
    """Steady and whole-run messages/s over all processes, and how many each handled."""
    topic, group = f"proc.{uid()}", f"proc-{uid()}"
    if declares:
        holder = bus.Service(group)
        holder.subscribe(topic, group=group)(noop)
        async with bus.Bus(url, services=[holder], presence_interval=None):
            pass
    async with bus.Bus(url, presence_interval=None) as b:

        async def send(p: Payload) -> None:
            await b.publish(topic, p)

        await drive.windowed(items, WINDOW, send)
    children = [await _child(url, topic, group, concurrency) for _ in range(processes)]
    reports: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * processes
    done = asyncio.Event()
    timeline: list[tuple[float, int]] = []  # (wall time received, total handled)

    async def read(i: int, child: asyncio.subprocess.Process) -> None:
        assert child.stdout is not None
        async for line in child.stdout:
            parts = line.split()
            if len(parts) == 3:
                reports[i] = (int(parts[0]), float(parts[1]), float(parts[2]))
                total = sum(r[0] for r in reports)
                timeline.append((time.time(), total))
                if total >= len(items):
                    done.set()

    readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(children)]
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        deadline = time.monotonic() + 15
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        for reader in readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    first = min(r[1] for r in reports if r[0])
    last = max(r[2] for r in reports)
    whole = len(items) / (last - first)
    return steady(timeline, len(items)) or whole, whole, [r[0] for r in reports]


def steady(timeline: list[tuple[float, int]], n: int) -> float | None:
    """The slope of the count between its crossings of 20% and 90% of ``n``; None when
    both fell in one report (too few messages: the whole-run rate stands in)."""
    low = next(p for p in timeline if p[1] >= 0.2 * n)
    high = next(p for p in timeline if p[1] >= 0.9 * n)
    if high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])

"""How every side drives load: calls in flight (callers each awaiting one call at a
time), batches, a fixed offered rate, keyed producers (the outbox), and the raw clients'
retry in place. The timed ones are the measured windows, profiled with ``--profile`` on
the bus side."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from benchmarks.suite import profiling
from benchmarks.suite.model import Failure, Payload
from benchmarks.suite.track import Work
from bus.service import DEFAULT_CONCURRENCY

PRELOAD = 200  # publishes in flight while filling queues before a consume (every side)
RETRY_ATTEMPTS = 3
RETRY_BACKOFF = 0.05
RETRY_MAX_BACKOFF = 0.2
Send = Callable[[Payload], Awaitable[None]]


def uid() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class ConsumeJob:
    """Messages waiting on ``loads``' topics, handled with ``concurrency`` per topic
    (None: the bus's default, and as many raw workers) by ``work``; with ``retry``
    failures are retried (the bus by its policy, raw clients in place) and then given up."""

    loads: dict[str, list[Payload]]
    concurrency: int | None
    work: Work
    retry: bool = False
    partitions: int | None = None
    timeout: float = 120.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def workers(self) -> int:
        """Handlers in flight per topic."""
        return self.concurrency or DEFAULT_CONCURRENCY

    @property
    def expected(self) -> int:
        return sum(1 for items in self.loads.values() for p in items if not p.fail)

    def interleaved(self) -> list[tuple[str, Payload]]:
        """Every (topic, payload), round robin over the topics."""
        columns = [[(t, p) for p in items] for t, items in self.loads.items()]
        return [x for row in itertools.zip_longest(*columns) for x in row if x is not None]


async def windowed(items: Iterable[Payload], window: int, send: Send) -> int:
    """Send every item, ``window`` at a time; return how many."""
    batch: list[Payload] = []
    count = 0
    for p in items:
        batch.append(p)
        if len(batch) >= window:
            await asyncio.gather(*(send(x) for x in batch))
            count += len(batch)
            batch = []
    if batch:
        await asyncio.gather(*(send(x) for x in batch))
        count += len(batch)
    return count


async def timed_batches(
    items: list[Payload], size: int, send: Callable[[list[Payload]], Awaitable[None]],
    profile: bool = False,
) -> float:  # fmt: skip
    """Send ``items`` ``size`` at a time, each batch awaited before the next; items/s."""
    with profiling.window(profile):
        started = time.perf_counter()
        for i in range(0, len(items), size):
            await send(items[i : i + size])
        return len(items) / (time.perf_counter() - started)


async def fixed_rate(items: list[Payload], rate: float, send: Send, cap: int = 1000) -> None:
    """Send item i at start + i/rate (its ``sent`` is that intended time, so a stalled
    sender shows up as latency), at most ``cap`` sends in flight."""
    room = asyncio.Semaphore(cap)
    tasks: set[asyncio.Task[None]] = set()

    async def one(p: Payload) -> None:
        try:
            await send(p)
        finally:
            room.release()

    start = time.perf_counter() + 0.01
    for i, p in enumerate(items):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        p.sent = target
        await room.acquire()
        task = asyncio.get_running_loop().create_task(one(p))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def calls_in_flight(
    n: int, in_flight: int, call: Callable[[int], Awaitable[None]], profile: bool = False
) -> float:
    """Make ``n`` calls from ``in_flight`` callers, each awaiting one call at a time;
    return calls/s."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await call(i)

    with profiling.window(profile):
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return n / (time.perf_counter() - started)


async def keyed_producers(
    n: int, producers: int, call: Callable[[int, str], Awaitable[None]], pace: float = 0.0
) -> None:
    """``producers`` tasks making ``n`` calls in all, ``call(i, key)``, each task awaiting
    one call at a time on a key of its own; with ``pace``, a task starts its k-th call no
    sooner than k * ``pace`` seconds in (one task paced: a light load, for latency)."""
    start = time.perf_counter()

    async def task(p: int) -> None:
        for k, i in enumerate(range(p, n, producers)):
            if pace:
                await asyncio.sleep(max(0.0, start + k * pace - time.perf_counter()))
            await call(i, f"k{p}")

    await asyncio.gather(*(task(p) for p in range(producers)))


async def retry_in_place(work: Work, payload: Payload) -> None:
    """What a raw client does without a retry policy: call again after a pause, holding
    the message (and its prefetch slot); give up after the last attempt."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            await work(payload)
            return
        except Failure:
            if attempt + 1 == RETRY_ATTEMPTS:
                return
            await asyncio.sleep(min(RETRY_MAX_BACKOFF, RETRY_BACKOFF * 2**attempt))


async def warm_until(
    event: asyncio.Event, send: Callable[[], Awaitable[None]], limit: float
) -> None:
    """Send a warm-up message every 0.1 s until ``event`` is set (consumers are up)."""
    deadline = time.monotonic() + limit
    while not event.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no consumer took a warm-up message in {limit}s")
        await send()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 0.1)

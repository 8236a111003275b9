"""The bus side of every scenario, the same code on every adapter (only the URL differs).
Its measured windows are the ones ``--profile`` profiles."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import bus
from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import WARM, Payload, noop
from benchmarks.suite.track import Latencies, Tracker


def _bus(url: str, services: list[bus.Service] | None = None) -> bus.Bus:
    return bus.Bus(url, services=services or [], presence_interval=None, close_timeout=5.0)


def _subscriber(tracker: Tracker | Latencies, topic: str):  # type: ignore[no-untyped-def]
    async def on_message(p: Payload) -> None:
        await tracker.handle(topic, p)

    return on_message


class BusSide:
    name = "bus"
    profiled = True

    def __init__(
        self, url_for: Callable[[], str], declares: bool, forget: Callable[[str], None] | None
    ) -> None:
        self.url_for = url_for  # the embedded broker gets a fresh name per case
        self.declares = declares  # group queues must exist before a publish (not Kafka)
        self.forget = forget  # frees an embedded broker after its case

    @property
    def url(self) -> str:
        return self.url_for()

    @contextlib.contextmanager
    def _fresh(self, partitions: int | None = None) -> Iterator[str]:
        url = self.url_for()
        if partitions is not None:
            url = _with_partitions(url, partitions)
        try:
            yield url
        finally:
            if self.forget is not None:
                self.forget(url)

    async def _declare(self, url: str, topic: str) -> None:
        """Make a group that keeps what is published to ``topic`` (as the raw sides bind a
        queue), so publishes are routed and stored, not dropped."""
        if self.declares:
            holder = bus.Service(f"pub-{uid()}")
            holder.subscribe(topic)(noop)
            async with _bus(url, [holder]):
                pass

    async def publish_one(self, topic: str, items: list[Payload], callers: int) -> float:
        with self._fresh() as url:
            await self._declare(url, topic)
            async with _bus(url) as b:
                await b.publish(topic, WARM)  # creates, connects, warms

                async def send(i: int) -> None:
                    await b.publish(topic, items[i])

                return await drive.calls_in_flight(len(items), callers, send, self.profiled)

    async def publish_batch(self, topic: str, items: list[Payload], size: int) -> float:
        with self._fresh() as url:
            await self._declare(url, topic)
            async with _bus(url) as b:
                await b.publish(topic, WARM)

                async def send(batch: list[Payload]) -> None:
                    await b.publish_many(topic, batch)

                return await drive.timed_batches(items, size, send, self.profiled)

    async def consume(self, job: ConsumeJob) -> float:
        with self._fresh(job.partitions) as url:
            return await self._consume(url, job)

    async def _consume(self, url: str, job: ConsumeJob) -> float:
        tracker = Tracker(job.loads, job.expected, job.work, self.profiled)
        service = bus.Service(f"c-{uid()}")
        retry = (
            bus.Retry(
                attempts=drive.RETRY_ATTEMPTS,
                backoff=drive.RETRY_BACKOFF,
                max_backoff=drive.RETRY_MAX_BACKOFF,
            )
            if job.retry
            else None
        )
        options = {} if job.concurrency is None else {"concurrency": job.concurrency}
        for topic in job.loads:
            service.subscribe(topic, retry=retry, **options)(_subscriber(tracker, topic))
        # Subscribed first, then the queues are filled while the gate holds the handlers.
        async with _bus(url, [service]) as b:
            pairs = job.interleaved()

            async def send(i: int) -> None:
                topic, p = pairs[i]
                await b.publish(topic, p)

            await drive.calls_in_flight(len(pairs), drive.PRELOAD, send)
            return await tracker.run(job.timeout)

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        with self._fresh() as url:
            return await self._round_trips(url, n, in_flight, items)

    async def _round_trips(self, url: str, n: int, in_flight: int, items: list[Payload]) -> float:
        topic = f"rr.{uid()}"
        service = bus.Service(f"rr-{uid()}")

        @service.respond(topic, concurrency=32)
        async def answer(p: Payload) -> Payload:
            await noop(p)
            return p

        async with _bus(url, [service]), _bus(url) as client:
            await client.request(topic, items[0], response=Payload, timeout=60.0)

            async def call(i: int) -> None:
                await client.request(topic, items[i % len(items)], response=Payload, timeout=30.0)

            return await drive.calls_in_flight(n, in_flight, call, self.profiled)

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        with self._fresh() as url:
            return await self._latency(url, items, rate)

    async def _latency(self, url: str, items: list[Payload], rate: float) -> list[float]:
        topic = f"lat.{uid()}"
        latencies = Latencies(len(items))
        service = bus.Service(f"lat-{uid()}")
        service.subscribe(topic, concurrency=16)(_subscriber(latencies, topic))
        async with _bus(url, [service]), _bus(url) as publisher:

            async def warm() -> None:
                await publisher.publish(topic, WARM)

            await drive.warm_until(latencies.warm, warm, 60.0)

            async def send(p: Payload) -> None:
                await publisher.publish(topic, p)

            await drive.fixed_rate(items, rate, send)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
        return latencies.samples


def _with_partitions(url: str, partitions: int) -> str:
    base, _, query = url.partition("?")
    kept = [kv for kv in query.split("&") if kv and not kv.startswith("partitions=")]
    return f"{base}?{'&'.join([*kept, f'partitions={partitions}'])}"

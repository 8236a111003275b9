"""The bus side of every scenario, the same code on every adapter (only the URL differs);
the ``outbox`` scenario's bus sides (a store beside the broker) at the end. Its measured
windows are the ones ``--profile`` profiles."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import bus
from benchmarks.suite import drive, profiling
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import WARM, Payload, noop
from benchmarks.suite.track import Latencies, Tracker, percentiles
from bus.message import Message

OUTBOX_TIMEOUT = 120.0


def _bus(
    url: str, services: list[bus.Service] | None = None, store: str | None = None,
    kind: type[bus.Bus] = bus.Bus,
) -> bus.Bus:  # fmt: skip
    return kind(
        url, services=services or [], presence_interval=None, close_timeout=5.0, store=store
    )


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


class _Watched(bus.Bus):
    """A Bus noting when its relay's sends of ``committed`` messages were confirmed
    (``_send_relayed``: the seam for this)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.committed: dict[str, float] = {}
        self.confirmed: dict[str, float] = {}
        self.all_confirmed = asyncio.Event()
        self.expect = 0

    async def _send_relayed(self, topic: str, message: Message) -> None:
        await super()._send_relayed(topic, message)
        if message.id in self.committed:  # not a row a failed run left
            self.confirmed[message.id] = time.perf_counter()
            if len(self.confirmed) >= self.expect:
                self.all_confirmed.set()


class BusPublisher:
    """The bus publishing keyed messages: through the outbox (each message in a
    ``b.transaction()`` of its own, sent by the bus's relay) or a plain confirmed
    ``b.publish``."""

    def __init__(self, url: str, store: str, outbox: bool) -> None:
        self.url = url
        self.store = store
        self.outbox = outbox
        self.profiled = outbox  # the scenario's bus role
        self.name = "bus outbox" if outbox else "bus publish"

    async def send(
        self, topic: str, items: list[Payload], producers: int, pace: float = 0.0
    ) -> dict[str, float]:
        """Every item from ``producers`` keyed tasks; msg/s from the first call to the
        last confirm, and latency percentiles (ms): a plain publish's call, or from the
        end of the transaction block (the commit included) to the relay's confirm."""
        if self.outbox:
            return await self._outbox(topic, items, producers, pace)
        took: list[float] = []
        async with _bus(self.url) as b:

            async def one(i: int, key: str) -> None:
                t0 = time.perf_counter()
                await b.publish(topic, items[i], key=key)
                took.append(time.perf_counter() - t0)

            with profiling.window(self.profiled):
                start = time.perf_counter()
                await drive.keyed_producers(len(items), producers, one, pace)
                wall = time.perf_counter() - start
        return {"rate": len(items) / wall, **percentiles(took)}

    async def _outbox(
        self, topic: str, items: list[Payload], producers: int, pace: float
    ) -> dict[str, float]:
        b = _bus(self.url, store=self.store, kind=_Watched)
        assert isinstance(b, _Watched)
        async with b:
            b.expect = len(items)

            async def one(i: int, key: str) -> None:
                async with b.transaction() as tx:
                    message_id = await tx.publish(topic, items[i], key=key)
                    b.committed[message_id] = time.perf_counter()  # the commit comes next

            with profiling.window(self.profiled):
                start = time.perf_counter()
                await drive.keyed_producers(len(items), producers, one, pace)
                await asyncio.wait_for(b.all_confirmed.wait(), OUTBOX_TIMEOUT)
                wall = time.perf_counter() - start
            took = [b.confirmed[m] - t for m, t in b.committed.items()]
        return {"rate": len(items) / wall, **percentiles(took)}


class BusInbox:
    """The bus consuming with a store: a plain or an idempotent handler (its inbox row and
    transaction), empty or writing one row (plain: in ``ctx.open_transaction()``;
    idempotent: in ``ctx.transaction``)."""

    def __init__(self, url: str, store: str, idempotent: bool, write: bool) -> None:
        self.url = url
        self.store = store
        self.idempotent = idempotent
        self.write = write
        self.profiled = idempotent
        kind = "idempotent" if idempotent else "plain"
        self.name = f"bus {kind}" + (
            (" + write" if idempotent else " + write in its own transaction") if write else ""
        )

    async def consume(
        self, topic: str, group: str, items: list[Payload], concurrency: int
    ) -> float:
        """``items`` queued for a new group, then handled at ``concurrency``; msg/s from
        the first handled to the last (the queue full from the start on every side)."""
        n = len(items)
        times: list[float] = []
        finished = asyncio.Event()
        service = bus.Service(group)
        insert = "INSERT INTO effects (seq) VALUES ($1)"
        write = self.write

        if self.idempotent:

            @service.subscribe(topic, idempotent=True, concurrency=concurrency)
            async def on_idempotent(p: Payload, ctx: bus.Context) -> None:
                if write:
                    conn: Any = ctx.transaction.connection  # asyncpg's
                    await conn.execute(insert, p.seq)
                handled()

        else:

            @service.subscribe(topic, concurrency=concurrency)
            async def on_plain(p: Payload, ctx: bus.Context) -> None:
                if write:
                    async with ctx.open_transaction() as tx:
                        conn: Any = tx.connection  # asyncpg's
                        await conn.execute(insert, p.seq)
                handled()

        def handled() -> None:
            times.append(time.perf_counter())
            if len(times) >= n:
                finished.set()

        async with _bus(self.url, [service], self.store):  # the group's queue, bound
            pass
        async with _bus(self.url) as b:
            await b.publish_many(topic, items)
        async with _bus(self.url, [service], self.store):
            with profiling.window(self.profiled):
                await asyncio.wait_for(finished.wait(), OUTBOX_TIMEOUT)
        return (n - 1) / (times[-1] - times[0])

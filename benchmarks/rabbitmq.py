"""RabbitMQ: the bus side by side with raw aio-pika doing the same work, in one run.

    .venv/bin/python -m benchmarks.rabbitmq            # the full run (~3 minutes)
    .venv/bin/python -m benchmarks.rabbitmq --quick    # a smoke run of a few seconds

Cases: publish throughput (confirms, 100 in flight), consume throughput (decode into a
Struct, await the handler, ack; prefetch 100), request-reply round trips per second at 1
and 32 in flight. Rounds alternate which side goes first; each side's best round counts.
The broker is $BENCH_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/; everything the
run declares carries one prefix and is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika

import bus
from benchmarks import rabbitmq_raw as raw
from benchmarks.common import Item, Reply, Sizes, answer, items
from benchmarks.common import yielding_handler as handler

BASE_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
WINDOW = 100  # publishes in flight
PREFETCH = 100


FULL = Sizes(publish=10_000, consume=10_000, rr1=2_000, rr32=5_000, rounds=5)
QUICK = Sizes(publish=2_000, consume=2_000, rr1=200, rr32=1_000, rounds=1)


class Bench:
    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.exchange = f"bus-bench-{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in BASE_URL else "?"
        self.bus_url = f"{BASE_URL}{sep}exchange={self.exchange}"
        self.queues: list[str] = []

    # -- set-up -----------------------------------------------------------------------

    async def declare(self, name: str, topic: str) -> str:
        """A durable queue bound to ``topic``, like the bus's own group queues."""
        queue = f"{self.exchange}:{name}"
        async with await aio_pika.connect(BASE_URL) as conn:
            channel = await conn.channel()
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            q = await channel.declare_queue(queue, durable=True)
            await q.bind(exchange, topic)
            await q.purge()
        self.queues.append(queue)
        return queue

    async def purge(self, queue: str) -> None:
        async with await aio_pika.connect(BASE_URL) as conn:
            channel = await conn.channel()
            await (await channel.get_queue(queue)).purge()

    async def cleanup(self) -> None:
        async with await aio_pika.connect(BASE_URL) as conn:
            channel = await conn.channel()
            raw_channel = await channel.get_underlay_channel()
            for queue in self.queues:
                await raw_channel.queue_delete(queue)
            await raw_channel.exchange_delete(self.exchange)

    # -- cases: each returns operations per second ------------------------------------

    async def publish_raw(self) -> float:
        queue = await self.declare("raw-pub", "pub.raw")
        payloads = items(self.sizes.publish)
        started = time.perf_counter()
        await raw.publish(BASE_URL, self.exchange, "pub.raw", payloads, WINDOW)
        rate = len(payloads) / (time.perf_counter() - started)
        await self.purge(queue)
        return rate

    async def publish_bus(self) -> float:
        queue = await self.declare("bus-pub", "pub.bus")
        payloads = items(self.sizes.publish)
        started = time.perf_counter()
        async with bus.Bus(self.bus_url) as b:
            for start in range(0, len(payloads), WINDOW):
                await asyncio.gather(
                    *(b.publish("pub.bus", p) for p in payloads[start : start + WINDOW])
                )
        rate = len(payloads) / (time.perf_counter() - started)
        await self.purge(queue)
        return rate

    async def consume_raw(self) -> float:
        n = self.sizes.consume
        queue = await self.declare("raw-consume", "consume.raw")
        await raw.publish(BASE_URL, self.exchange, "consume.raw", items(n), WINDOW)
        started = time.perf_counter()
        await raw.consume(BASE_URL, queue, Item, handler, n, PREFETCH)
        return n / (time.perf_counter() - started)

    async def consume_bus(self) -> float:
        n = self.sizes.consume
        done = asyncio.Event()
        seen = 0
        service = bus.Service("bench")

        @service.subscribe("consume.bus", concurrency=PREFETCH)
        async def on_item(item: Item) -> None:
            nonlocal seen
            await handler(item)
            seen += 1
            if seen >= n:
                done.set()

        async with bus.Bus(self.bus_url, services=[service]):
            pass  # the group's queue now exists and is bound
        self.queues.append(f"{self.exchange}:bench:consume.bus")
        self.queues.append(f"{self.exchange}:bench:consume.bus:dlq")
        await raw.publish(BASE_URL, self.exchange, "consume.bus", items(n), WINDOW)
        started = time.perf_counter()
        async with bus.Bus(self.bus_url, services=[service]):
            await done.wait()
            rate = n / (time.perf_counter() - started)
        return rate

    async def rr_raw(self, in_flight: int, total: int) -> float:
        queue = await self.declare("raw-rr", "rr.raw")
        responder = raw.Responder(BASE_URL, queue, Item, answer)
        requester = raw.Requester(BASE_URL, self.exchange, Reply)
        await responder.start(PREFETCH)
        await requester.start()
        try:
            payloads = items(total)

            async def one(item: Item) -> None:
                await requester.request("rr.raw", item)

            return await _round_trips(one, payloads, in_flight)
        finally:
            await requester.close()
            await responder.close()

    async def rr_bus(self, in_flight: int, total: int) -> float:
        service = bus.Service("bench-rr")

        @service.respond("rr.bus", concurrency=PREFETCH)
        async def on_request(item: Item) -> Reply:
            return await answer(item)

        self.queues.append(f"{self.exchange}:bench-rr:rr.bus")
        self.queues.append(f"{self.exchange}:bench-rr:rr.bus:dlq")
        async with bus.Bus(self.bus_url, services=[service]), bus.Bus(self.bus_url) as client:
            await client.request("rr.bus", items(1)[0], response=Reply)  # opens the inbox

            async def one(item: Item) -> None:
                await client.request("rr.bus", item, response=Reply, timeout=10.0)

            return await _round_trips(one, items(total), in_flight)


async def _round_trips(
    one: Callable[[Item], Awaitable[None]], payloads: list[Item], in_flight: int
) -> float:
    queue = list(reversed(payloads))

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(payloads) / (time.perf_counter() - started)


async def run(sizes: Sizes, only: str | None = None) -> list[tuple[str, float, float]]:
    bench = Bench(sizes)
    cases: list[tuple[str, Callable[[], Awaitable[float]], Callable[[], Awaitable[float]]]] = [
        ("publish msg/s (confirms, 100 in flight)", bench.publish_raw, bench.publish_bus),
        ("consume msg/s (prefetch 100, ack each)", bench.consume_raw, bench.consume_bus),
        (
            "request-reply round trips/s, 1 in flight",
            lambda: bench.rr_raw(1, sizes.rr1),
            lambda: bench.rr_bus(1, sizes.rr1),
        ),
        (
            "request-reply round trips/s, 32 in flight",
            lambda: bench.rr_raw(32, sizes.rr32),
            lambda: bench.rr_bus(32, sizes.rr32),
        ),
    ]
    if only is not None:
        cases = [c for c in cases if only in c[0]]
    results = []
    try:
        for name, raw_case, bus_case in cases:
            raw_rates: list[float] = []
            bus_rates: list[float] = []
            for round_ in range(sizes.rounds):
                order = (raw_case, bus_case) if round_ % 2 == 0 else (bus_case, raw_case)
                for case in order:
                    rate = await case()
                    (raw_rates if case is raw_case else bus_rates).append(rate)
            raw_best, bus_best = max(raw_rates), max(bus_rates)
            results.append((name, raw_best, bus_best))
            pairs = list(zip(raw_rates, bus_rates, strict=True))
            rounds = " ".join(f"{r:.0f}/{b:.0f}" for r, b in pairs)
            median = statistics.median(b / r for r, b in pairs)
            print(
                f"{name:44} raw {raw_best:7.0f}  bus {bus_best:7.0f}  "
                f"ratio {bus_best / raw_best:.2f}  median round ratio {median:.2f}  "
                f"(rounds raw/bus: {rounds})",
                flush=True,
            )
    finally:
        await bench.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 5, quick 1)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes.rounds = args.rounds
    print(f"RabbitMQ at {bus.url.redact(BASE_URL)}; sizes {sizes}")
    asyncio.run(run(sizes, args.only))


if __name__ == "__main__":
    main()

"""Kafka: the bus side by side with raw aiokafka doing the same work, in one run, on a
tansu broker the run starts for itself.

    .venv/bin/python -m benchmarks.kafka            # the full run (~4 minutes)
    .venv/bin/python -m benchmarks.kafka --quick    # a smoke run of a few seconds

Cases: publish throughput (acks=all, 100 in flight), consume throughput (decode into a
Struct, await the handler, commit per batch; timed from the first record to the last so
the group join is not counted), request-reply round trips per second at 1 and 32 in
flight (raw: a hand-written request topic and reply topic pair). Rounds alternate which
side goes first; each side's best round counts. Every round uses fresh topics.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import msgspec

import bus
from benchmarks import kafka_raw as raw
from benchmarks.common import Item, Reply, Sizes, answer, items
from benchmarks.common import yielding_handler as handler
from benchmarks.suite.brokers import Tansu

WINDOW = 100  # publishes in flight


FULL = Sizes(publish=30_000, consume=50_000, rr1=1_000, rr32=5_000, rounds=5)
QUICK = Sizes(publish=2_000, consume=2_000, rr1=100, rr32=500, rounds=1)


class Bench:
    def __init__(self, broker: Tansu, sizes: Sizes) -> None:
        self.broker = broker
        self.servers = broker.bootstrap
        self.url = f"kafka://{broker.bootstrap}?{raw.OPTIONS}"
        self.sizes = sizes

    async def publish_raw(self) -> float:
        topic = raw.unique("pub.raw")
        await raw.create(self.servers, topic)
        values = [msgspec.json.encode(i) for i in items(self.sizes.publish)]
        p = await raw.producer(self.servers)
        try:
            started = time.perf_counter()
            await raw.publish(p, topic, values, WINDOW)
            return len(values) / (time.perf_counter() - started)
        finally:
            await p.stop()

    async def publish_bus(self) -> float:
        topic = raw.unique("pub.bus")
        payloads = items(self.sizes.publish)
        async with bus.Bus(self.url) as b:
            await b.publish(topic, payloads[0])  # creates the topic
            started = time.perf_counter()
            for start in range(0, len(payloads), WINDOW):
                await asyncio.gather(
                    *(b.publish(topic, p) for p in payloads[start : start + WINDOW])
                )
            return len(payloads) / (time.perf_counter() - started)

    async def publish_many_bus(self) -> float:
        """The same windows of 100, through Bus.publish_many: sent, then confirmed."""
        topic = raw.unique("pub.bus")
        payloads = items(self.sizes.publish)
        async with bus.Bus(self.url) as b:
            await b.publish(topic, payloads[0])  # creates the topic
            started = time.perf_counter()
            for start in range(0, len(payloads), WINDOW):
                await b.publish_many(topic, payloads[start : start + WINDOW])
            return len(payloads) / (time.perf_counter() - started)

    async def _fill(self, topic: str) -> None:
        await raw.create(self.servers, topic)
        p = await raw.producer(self.servers)
        try:
            values = [msgspec.json.encode(i) for i in items(self.sizes.consume)]
            await raw.publish(p, topic, values, 1000)
        finally:
            await p.stop()

    async def consume_raw(self) -> float:
        topic = raw.unique("consume.raw")
        await self._fill(topic)
        return await raw.consume(self.servers, topic, Item, handler, self.sizes.consume)

    async def consume_bus(self) -> float:
        n = self.sizes.consume
        topic = raw.unique("consume.bus")
        await self._fill(topic)
        done = asyncio.Event()
        seen = 0
        started = 0.0
        service = bus.Service(raw.unique("bench"))

        @service.subscribe(topic, concurrency=self.sizes.concurrency)
        async def on_item(item: Item) -> None:
            nonlocal seen, started
            if not seen:
                started = time.perf_counter()
            await handler(item)
            seen += 1
            if seen >= n:
                done.set()

        async with bus.Bus(self.url, services=[service]):
            await done.wait()
            return (n - 1) / (time.perf_counter() - started)

    async def rr_raw(self, in_flight: int, total: int) -> float:
        topic = raw.unique("rr.raw")
        await raw.create(self.servers, topic)
        responder = raw.Responder(self.servers, topic, Item, answer)
        requester = raw.Requester(self.servers, Reply)
        await responder.start()
        await requester.start()
        try:
            await requester.request(topic, items(1)[0])  # warm: both ends are reading

            async def one(item: Item) -> None:
                await requester.request(topic, item)

            return await _round_trips(one, items(total), in_flight)
        finally:
            await requester.close()
            await responder.close()

    async def rr_bus(self, in_flight: int, total: int) -> float:
        topic = raw.unique("rr.bus")
        service = bus.Service(raw.unique("bench-rr"))

        @service.respond(topic, concurrency=32)
        async def on_request(item: Item) -> Reply:
            return await answer(item)

        async with bus.Bus(self.url, services=[service]), bus.Bus(self.url) as client:
            await client.request(topic, items(1)[0], response=Reply, timeout=30.0)  # warm

            async def one(item: Item) -> None:
                await client.request(topic, item, response=Reply, timeout=10.0)

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


async def run(broker: Tansu, sizes: Sizes, only: str | None = None) -> None:
    bench = Bench(broker, sizes)
    cases: list[tuple[str, Callable[[], Awaitable[float]], Callable[[], Awaitable[float]]]] = [
        ("publish msg/s (acks=all, 100 in flight)", bench.publish_raw, bench.publish_bus),
        (
            "publish_many msg/s (acks=all, batches of 100)",
            bench.publish_raw,
            bench.publish_many_bus,
        ),
        ("consume msg/s (commit per batch)", bench.consume_raw, bench.consume_bus),
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
    for name, raw_case, bus_case in cases:
        raw_rates: list[float] = []
        bus_rates: list[float] = []
        for round_ in range(sizes.rounds):
            order = (raw_case, bus_case) if round_ % 2 == 0 else (bus_case, raw_case)
            for case in order:
                rate = await case()
                (raw_rates if case is raw_case else bus_rates).append(rate)
        raw_best, bus_best = max(raw_rates), max(bus_rates)
        pairs = list(zip(raw_rates, bus_rates, strict=True))
        rounds = " ".join(f"{r:.0f}/{b:.0f}" for r, b in pairs)
        median = statistics.median(b / r for r, b in pairs)
        print(
            f"{name:44} raw {raw_best:7.0f}  bus {bus_best:7.0f}  "
            f"ratio {bus_best / raw_best:.2f}  median round ratio {median:.2f}  "
            f"(rounds raw/bus: {rounds})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 5, quick 1)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--concurrency", type=int, help="the bus consumer's handler concurrency")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes.rounds = args.rounds
    if args.concurrency:
        sizes.concurrency = args.concurrency
    broker = Tansu()
    try:
        print(f"tansu at {broker.bootstrap} ({raw.OPTIONS}); sizes {sizes}", flush=True)
        asyncio.run(run(broker, sizes, args.only))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()

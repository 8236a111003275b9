"""The embedded broker against a bare anyio memory object stream doing the same work:
encode, hand over, decode with msgspec into the same Struct, await the same handler.

    python -m benchmarks.memory [--quick] [--messages N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import uuid
from collections.abc import Awaitable, Callable

import anyio
import msgspec

import bus
from benchmarks.common import Order, Row, handler, make_order, table, timed

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Order).decode


async def raw_throughput(n: int) -> float:
    send, receive = anyio.create_memory_object_stream[bytes](math.inf)
    orders = [make_order(i) for i in range(n)]

    async def run() -> int:
        async def consume() -> None:
            async with receive:
                async for body in receive:
                    await handler(decode(body))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            async with send:
                for order in orders:
                    await send.send(encode(order))
        return n

    return await timed(run)


async def bus_throughput(n: int, concurrency: int) -> float:
    done = anyio.Event()
    handled = 0
    svc = bus.Service("bench")
    orders = [make_order(i) for i in range(n)]

    @svc.subscribe("bench.orders", concurrency=concurrency)
    async def on_order(order: Order) -> None:
        nonlocal handled
        await handler(order)
        handled += 1
        if handled == n:
            done.set()

    async with bus.Bus(f"memory://bench-{uuid.uuid4().hex}", services=[svc]) as b:

        async def run() -> int:
            for order in orders:
                await b.publish("bench.orders", order)
            await done.wait()
            return n

        return await timed(run)


async def raw_round_trips(n: int, in_flight: int) -> float:
    requests_send, requests_receive = anyio.create_memory_object_stream[
        tuple[bytes, anyio.abc.ObjectSendStream[bytes]]
    ](math.inf)

    async def respond() -> None:
        async for body, reply_to in requests_receive:
            order = decode(body)
            await handler(order)
            await reply_to.send(encode(order))

    async def run() -> int:
        async def client(count: int) -> None:
            for i in range(count):
                send, receive = anyio.create_memory_object_stream[bytes](1)
                await requests_send.send((encode(make_order(i)), send))
                decode(await receive.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(respond)
            async with anyio.create_task_group() as clients:
                for _ in range(in_flight):
                    clients.start_soon(client, n // in_flight)
            tg.cancel_scope.cancel()
        return (n // in_flight) * in_flight

    return await timed(run)


async def bus_round_trips(n: int, in_flight: int) -> float:
    svc = bus.Service("bench-rpc")

    @svc.respond("bench.get", concurrency=max(in_flight, 1))
    async def get(order: Order) -> Order:
        await handler(order)
        return order

    async with bus.Bus(f"memory://bench-{uuid.uuid4().hex}", services=[svc]) as b:

        async def run() -> int:
            async def client(count: int) -> None:
                for i in range(count):
                    await b.request("bench.get", make_order(i), response=Order, timeout=10)

            async with anyio.create_task_group() as clients:
                for _ in range(in_flight):
                    clients.start_soon(client, n // in_flight)
            return (n // in_flight) * in_flight

        return await timed(run)


async def alternate(
    rounds: int, bus_side: Callable[[], Awaitable[float]], raw_side: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Medians of ``rounds`` runs of each, interleaved so that a noisy neighbour on the
    machine hits both sides alike."""
    bus_runs, raw_runs = [], []
    for _ in range(rounds):
        raw_runs.append(await raw_side())
        bus_runs.append(await bus_side())
    return statistics.median(bus_runs), statistics.median(raw_runs)


async def measure(
    messages: int, round_trips: int, rounds: int = 3, with_sdk: bool = True
) -> list[Row]:
    rows = []
    # Warm both paths once so caches and imports do not count.
    await raw_throughput(1000)
    await bus_throughput(1000, 1)
    for concurrency in (1, 16):
        bus_tp, raw_tp = await alternate(
            rounds,
            lambda c=concurrency: bus_throughput(messages, c),  # type: ignore[misc]
            lambda: raw_throughput(messages),
        )
        rows.append(
            Row(f"publish + handle + ack, concurrency {concurrency}", "msg/s", bus_tp, raw_tp)
        )
    for in_flight in (1, 32):
        bus_rt, raw_rt = await alternate(
            rounds,
            lambda f=in_flight: bus_round_trips(round_trips, f),  # type: ignore[misc]
            lambda f=in_flight: raw_round_trips(round_trips, f),  # type: ignore[misc]
        )
        rows.append(Row(f"request-reply, {in_flight} in flight", "round trips/s", bus_rt, raw_rt))
    if with_sdk:
        # Last, because a global tracer provider cannot be taken back: the rows above ran
        # with opentelemetry-api alone, as a service without an SDK would.
        install_sdk()
        bus_tp, raw_tp = await alternate(
            rounds, lambda: bus_throughput(messages, 1), lambda: raw_throughput(messages)
        )
        rows.append(
            Row(
                "publish + handle + ack, concurrency 1, OpenTelemetry SDK on",
                "msg/s",
                bus_tp,
                raw_tp,
            )
        )
    return rows


def install_sdk() -> None:
    """A real SDK with spans and metrics recorded, exporting nowhere."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    metrics.set_meter_provider(MeterProvider())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    messages = 5_000 if args.quick else args.messages
    round_trips = 2_000 if args.quick else 20_000
    rows = anyio.run(measure, messages, round_trips, 1 if args.quick else 3)
    print(table("In-memory: bus vs a bare anyio memory object stream", rows, "anyio stream"))


if __name__ == "__main__":
    main()

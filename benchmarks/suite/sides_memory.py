"""The raw side on the embedded adapter: bare anyio memory object streams doing the same
work (encode, hand over, decode with msgspec, await the handler)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio

from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob
from benchmarks.suite.model import Payload, decode, encode, noop
from benchmarks.suite.track import Latencies, Tracker


def _stream() -> tuple[Any, Any]:
    return anyio.create_memory_object_stream[bytes](math.inf)


async def _consumers(receive: Any, concurrency: int, topic: str, handle: Any) -> None:
    async def one() -> None:
        async for body in receive.clone():
            await handle(topic, decode(body))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(one)


class MemoryRaw:
    name = "anyio stream"

    async def publish(self, topic: str, items: list[Payload], window: int) -> float:
        send, receive = _stream()
        async with send, receive:

            async def one(p: Payload) -> None:
                await send.send(encode(p))

            return await drive.timed_publish(items, window, one)

    async def consume(self, job: ConsumeJob) -> float:
        tracker = Tracker(job.loads, job.expected, job.work)
        handle = tracker.handle
        if job.retry:

            async def handle(topic: str, p: Payload) -> None:
                await drive.retry_in_place(lambda x: tracker.handle(topic, x), p)

        async with anyio.create_task_group() as tg:
            for topic, items in job.loads.items():
                send, receive = _stream()
                for p in items:
                    send.send_nowait(encode(p))
                tg.start_soon(_consumers, receive, job.concurrency, topic, handle)
            rate = await tracker.run(job.timeout)
            tg.cancel_scope.cancel()
        return rate

    async def round_trips(self, n: int, in_flight: int, size_items: list[Payload]) -> float:
        requests_send, requests_receive = anyio.create_memory_object_stream[tuple[bytes, Any]](
            math.inf
        )

        async def respond_one(body: bytes, reply_to: Any) -> None:
            p = decode(body)
            await noop(p)
            await reply_to.send(encode(p))

        async def respond() -> None:
            async with anyio.create_task_group() as workers:
                limiter = anyio.CapacityLimiter(32)

                async def limited(body: bytes, reply_to: Any) -> None:
                    async with limiter:
                        await respond_one(body, reply_to)

                async for body, reply_to in requests_receive:
                    workers.start_soon(limited, body, reply_to)

        async def call(i: int) -> None:
            send, receive = anyio.create_memory_object_stream[bytes](1)
            await requests_send.send((encode(size_items[i % len(size_items)]), send))
            decode(await receive.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(respond)
            rate = await drive.calls_in_flight(n, in_flight, call)
            tg.cancel_scope.cancel()
        return rate

    async def latency(self, items: list[Payload], rate: float) -> list[float]:
        latencies = Latencies(len(items))
        send, receive = _stream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_consumers, receive, 16, "lat", latencies.handle)

            async def one(p: Payload) -> None:
                await send.send(encode(p))

            await drive.fixed_rate(items, rate, one)
            await asyncio.wait_for(latencies.done.wait(), 60.0)
            tg.cancel_scope.cancel()
        return latencies.samples

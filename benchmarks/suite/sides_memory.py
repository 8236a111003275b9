"""The raw side on the embedded adapter: bare anyio memory object streams doing the same
work (encode, hand over, decode with msgspec into the same Struct, await the handler), the
way one would write it for throughput: a fixed pool of consumers per stream, and for
request-reply a fixed pool of responders and a future per call."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio

from benchmarks.suite import drive
from benchmarks.suite.drive import ConsumeJob
from benchmarks.suite.model import Payload, decode, encode, noop
from benchmarks.suite.track import Latencies, Tracker

RESPONDERS = 32  # as the bus side's respond(concurrency=32)


def _stream() -> tuple[Any, Any]:
    return anyio.create_memory_object_stream[bytes](math.inf)


async def _consumers(receive: Any, concurrency: int, topic: str, handle: Any) -> None:
    async def one() -> None:
        mine = receive.clone()
        while True:
            # What is already there is taken without a checkpoint (the bus's poll() does
            # the same); the handler's own await yields.
            try:
                body = mine.receive_nowait()
            except anyio.WouldBlock:
                body = await mine.receive()
            await handle(topic, decode(body))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(one)


class MemoryRaw:
    name = "anyio stream"
    profiled = False

    async def publish_one(self, topic: str, items: list[Payload], callers: int) -> float:
        send, receive = _stream()
        async with send, receive:

            async def one(i: int) -> None:
                send.send_nowait(encode(items[i]))  # unbounded: an append, as the broker's

            return await drive.calls_in_flight(len(items), callers, one)

    async def publish_batch(self, topic: str, items: list[Payload], size: int) -> float:
        send, receive = _stream()
        async with send, receive:

            async def batch(ps: list[Payload]) -> None:
                for p in ps:
                    send.send_nowait(encode(p))

            return await drive.timed_batches(items, size, batch)

    async def consume(self, job: ConsumeJob) -> float:
        tracker = Tracker(job.loads, job.expected, job.work)
        handle = tracker.handle
        if job.retry:

            async def handle(topic: str, p: Payload) -> None:
                await drive.retry_in_place(lambda x: tracker.handle(topic, x), p)

        async with anyio.create_task_group() as tg:
            senders = {}
            for topic in job.loads:  # consumers first, as the bus subscribes first
                send, receive = _stream()
                senders[topic] = send
                tg.start_soon(_consumers, receive, job.workers, topic, handle)
            for topic, p in job.interleaved():
                await senders[topic].send(encode(p))
            rate = await tracker.run(job.timeout)
            tg.cancel_scope.cancel()
        return rate

    async def round_trips(self, n: int, in_flight: int, items: list[Payload]) -> float:
        requests_send, requests_receive = anyio.create_memory_object_stream[
            tuple[bytes, asyncio.Future[bytes]]
        ](math.inf)

        async def responder() -> None:
            async for body, reply in requests_receive.clone():
                p = decode(body)
                await noop(p)
                if not reply.done():
                    reply.set_result(encode(p))

        loop = asyncio.get_running_loop()

        async def call(i: int) -> None:
            reply: asyncio.Future[bytes] = loop.create_future()
            requests_send.send_nowait((encode(items[i % len(items)]), reply))
            decode(await reply)

        async with anyio.create_task_group() as tg:
            for _ in range(RESPONDERS):
                tg.start_soon(responder)
            await call(0)
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

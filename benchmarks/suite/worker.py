"""A consumer process for the ``processes`` scenario (started by procs.py, never by hand).

    python -m benchmarks.suite.worker URL TOPIC GROUP CONCURRENCY

Handles Payloads with the 1 ms handler and prints ``count first last`` (wall-clock times
of the first and last handled message) whenever the count changed, every 50 ms; exits
when its stdin closes, or after MAX_LIFETIME seconds in any case.
"""

from __future__ import annotations

import logging
import sys
import time

import anyio

import bus
from benchmarks.suite.model import Payload, io_1ms

MAX_LIFETIME = 600.0


async def main(url: str, topic: str, group: str, concurrency: int) -> None:
    count, first, last = 0, 0.0, 0.0
    service = bus.Service(group)

    @service.subscribe(topic, group=group, concurrency=concurrency)
    async def on_message(p: Payload) -> None:
        nonlocal count, first, last
        await io_1ms(p)
        now = time.time()
        if count == 0:
            first = now
        count, last = count + 1, now

    async def report() -> None:
        shown = -1
        while True:
            if count != shown:
                shown = count
                print(f"{count} {first} {last}", flush=True)
            await anyio.sleep(0.05)

    async with bus.Bus(url, services=[service], presence_interval=None, close_timeout=5.0):
        print("ready", flush=True)
        with anyio.move_on_after(MAX_LIFETIME):
            async with anyio.create_task_group() as tg:
                tg.start_soon(report)
                await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
                tg.cancel_scope.cancel()


if __name__ == "__main__":
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # tansu refuses idempotence
    url, topic, group, concurrency = sys.argv[1:5]
    anyio.run(main, url, topic, group, int(concurrency))

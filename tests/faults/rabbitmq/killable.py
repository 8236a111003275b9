"""A consumer process for the SIGKILL test: its handler marks a file, then hangs.

Run as: python tests/faults/rabbitmq/killable.py URL TOPIC GROUP MARKER
"""

from __future__ import annotations

import sys

import anyio
import msgspec

import bus


class Job(msgspec.Struct):
    n: int


async def main(url: str, topic: str, group: str, marker: str) -> None:
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=1)
    async def handle(job: Job, ctx: bus.Context) -> None:
        await anyio.Path(marker).write_text(f"{job.n} {ctx.attempt}")
        await anyio.sleep_forever()  # killed here, holding the message unacked

    async with bus.Bus(url, services=[service]):
        await anyio.Path(marker + ".ready").write_text("ready")
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])

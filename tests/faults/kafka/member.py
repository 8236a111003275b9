"""A group member in a process of its own, for the rebalance test: each message it
handles is one line ``key seq`` in its ledger file (line-buffered, so a SIGKILL loses
no line of a handler that returned).

Run as: python tests/faults/kafka/member.py URL TOPIC GROUP LEDGER
"""

from __future__ import annotations

import sys
from typing import TextIO

import anyio
import msgspec

import bus


class Tick(msgspec.Struct):
    key: str
    seq: int


async def main(url: str, topic: str, group: str, out: TextIO) -> None:
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=1)
    async def handle(tick: Tick) -> None:
        out.write(f"{tick.key} {tick.seq}\n")

    async with bus.Bus(url, services=[service]):
        await anyio.sleep_forever()


if __name__ == "__main__":
    url, topic, group, ledger = sys.argv[1:5]
    with open(ledger, "a", buffering=1) as out:
        anyio.run(main, url, topic, group, out)

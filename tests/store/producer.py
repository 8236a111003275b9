"""A producer process for the crash test: commits N outbox messages in one transaction,
marks a file, and lets its relay send them until it is SIGKILLed.

Run as: python tests/store/producer.py BUS_URL STORE_URL TOPIC N MARKER
"""

from __future__ import annotations

import sys

import anyio

import bus
from tests.store.helpers import Step


async def main(url: str, store: str, topic: str, n: int, marker: str) -> None:
    async with bus.Bus(url, store=store) as b:
        async with b.transaction() as tx:
            for seq in range(n):
                key = f"k{seq % 4}"
                await tx.publish(topic, Step(key, seq), key=key)
        await anyio.Path(marker).write_text("committed")
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])

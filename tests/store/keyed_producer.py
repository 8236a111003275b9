"""A producer process for the many-producers test: waits for a start file, then commits
PER_KEY transactions on each of its KEYS keys (its own: ``p<ME>-k<j>``), interleaved,
some transactions holding one message of each of two keys; then closes its bus, whose
relay sends what is left, and writes what its relay sent to RESULT.

Every Bus with a store runs a relay, so each producer process is also a relay competing
for every producer's rows (woken by each commit's NOTIFY).

Run as: python tests/store/keyed_producer.py BUS_URL STORE_URL TOPIC ME KEYS PER_KEY GO RESULT
"""

from __future__ import annotations

import json
import random
import sys

import anyio

import bus
from tests.store.helpers import Step


async def main(
    url: str, store: str, topic: str, me: int, keys: int, per_key: int, go: str, result: str
) -> None:
    rng = random.Random(me)
    async with bus.Bus(url, store=store) as b:
        relay = b.relay
        await anyio.Path(f"{result}.ready").write_text("ready")
        while not await anyio.Path(go).exists():
            await anyio.sleep(0.005)
        for seq in range(per_key):
            order = list(range(keys))
            rng.shuffle(order)
            while order:  # one key, or two in one transaction
                n = rng.choice((1, 2))
                take, order = order[:n], order[n:]
                async with b.transaction() as tx:
                    for k in take:
                        key = f"p{me}-k{k}"
                        await tx.publish(topic, Step(key, seq), key=key)
    sent = relay.sent if relay is not None else 0
    await anyio.Path(result).write_text(json.dumps({"sent": sent}))


if __name__ == "__main__":
    a = sys.argv[1:]
    anyio.run(main, a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]), a[6], a[7])

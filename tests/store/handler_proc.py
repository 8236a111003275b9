"""A consumer process for the handler-crash test: an idempotent handler whose effects are
a database write and a publish (through its transaction's outbox).

In mode ``hang`` the handler of message HANG_SEQ writes, publishes, marks a file and then
hangs inside its transaction, to be SIGKILLed there; in mode ``finish`` every message is
handled to the end. Each handled message is written to ``effects`` with this process's
pid and the attempt number.

Run as: python tests/store/handler_proc.py BUS_URL STORE_URL TOPIC OUT GROUP MODE MARKER HANG_SEQ
"""

from __future__ import annotations

import os
import sys

import anyio

import bus
from tests.store.helpers import Step


async def main(
    url: str, store: str, topic: str, out: str, group: str, mode: str, marker: str, hang: int
) -> None:
    service = bus.Service(group)

    @service.subscribe(topic, idempotent=True, concurrency=4)
    async def on_step(step: Step, ctx: bus.Context) -> None:
        tx = ctx.transaction
        await tx.connection.execute(
            "INSERT INTO effects (seq, pid, attempt) VALUES ($1, $2, $3)",
            step.seq,
            os.getpid(),
            ctx.attempt,
        )
        await tx.publish(out, Step(step.key, step.seq), key=step.key)
        if mode == "hang" and step.seq == hang:
            await anyio.Path(marker).write_text("inside")
            await anyio.sleep_forever()  # SIGKILLed here, the transaction open

    async with bus.Bus(url, services=[service], store=store):
        await anyio.Path(marker + ".ready").write_text("ready")
        await anyio.sleep_forever()


if __name__ == "__main__":
    a = sys.argv[1:]
    anyio.run(main, a[0], a[1], a[2], a[3], a[4], a[5], a[6], int(a[7]))

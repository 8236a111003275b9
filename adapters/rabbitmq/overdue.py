"""Retries that RabbitMQ 3.10.8 forgets to let out of a quorum delay queue.

A delay queue hands a retry back to its group when the retry's TTL runs out. On a quorum
queue a timer of the leader's makes it look at the TTLs; after the leader moved (a node
of the cluster lost), 3.10.8 was seen to leave expired retries ready in the queue for
good (tests/cluster: four retries 30 s past their time, still there after the queue's
members were restarted), as if the new leader had no such timer. A command on the queue
makes it look: a ``basic.get`` first lets out what has expired, and hands over what has
not, which goes straight back (``nack``, requeue).

So the adapter remembers when the last retry it put in each quorum delay queue is due,
and a little after that asks the queue how many messages are ready in it. If any are,
it gets that ``basic.get``, and is asked again a little later, a few times at most.
Nothing runs while no retry waits, and a queue that empties as it should costs one
passive declare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiormq.exceptions as amqp
import anyio

from adapters.rabbitmq.link import Link

log = logging.getLogger("bus.rabbitmq")

GRACE = 2.0
"""Seconds past a queue's last due retry before it is asked whether it let them out."""
CHECKS = 3
"""How often a queue whose retries stay overdue is asked again (GRACE, then doubling)."""


class Overdue:
    """Watches the quorum delay queues one transport sent retries to."""

    def __init__(self, link: Link, *, grace: float = GRACE) -> None:
        self._link = link  # each look is on a channel of its own: a queue gone fails it
        self._grace = grace
        self._due: dict[str, float] = {}  # queue -> when its last retry is due (monotonic)
        self._wake = anyio.Event()
        self._task: asyncio.Task[None] | None = None

    def sent(self, queue: str, delay: float) -> None:
        """A retry went into ``queue``, due ``delay`` seconds from now."""
        due = time.monotonic() + delay
        if due > self._due.get(queue, 0.0):
            self._due[queue] = due
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        checks: dict[str, int] = {}
        while True:
            if not self._due:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            queue, due = min(self._due.items(), key=lambda item: item[1])
            wait = due + self._grace * 2 ** checks.get(queue, 0) - time.monotonic()
            if wait > 0:
                self._wake = anyio.Event()
                with anyio.move_on_after(wait):
                    await self._wake.wait()  # a later retry may move the queue's due time
                continue
            if self._due.get(queue) != due:
                continue
            try:
                left = await self._nudge(queue)
            except Exception as exc:  # the connection is being restored: ask again later
                log.debug("could not ask delay queue %r about its retries: %s", queue, exc)
                left = True
            done = checks.get(queue, 0) + 1
            if not left or done >= CHECKS:
                del self._due[queue]
                checks.pop(queue, None)
            else:
                checks[queue] = done

    async def _nudge(self, queue: str) -> bool:
        """Let out what ``queue`` holds overdue; False when it held nothing (or is gone)."""
        opened = await self._link.channel(confirms=False)
        try:
            channel = await opened.get_underlay_channel()
            try:
                declared = await channel.queue_declare(queue, passive=True)
            except amqp.ChannelNotFoundEntity:  # expired or deleted: nothing waits in it
                return False
            if not declared.message_count:
                return False
            log.warning(
                "delay queue %r still holds %d retries after the last one it was given was "
                "due (a quorum queue that changed leader, RabbitMQ 3.10.8?): asking it to "
                "let out what has expired",
                queue,
                declared.message_count,
            )
            got = await channel.basic_get(queue, no_ack=False)
            tag = getattr(got.delivery, "delivery_tag", None) if got is not None else None
            if tag:
                await channel.basic_nack(tag, requeue=True)  # not due yet: straight back
            return True  # asked again later: what it let out is counted only then
        finally:
            with contextlib.suppress(Exception):
                await opened.close()

"""Reading a dead-letter queue without consuming it, and moving it back (replay).

Browsing takes the messages present with basic.get (no auto-ack) on a channel of its
own, at most as many as the queue held when we looked, then closes that channel: RabbitMQ
puts every one of them back where it was, in order. Replay takes them the same way,
publishes each (confirmed) to the group's queue through the default exchange, and acks
only what the broker confirmed; replaying some by id puts the others back as a browse
does, so they keep their places.

A letter can be in the queue twice: a connection lost after its copy was confirmed and
before the original was acked has the original handled, and dead-lettered, again. Both
copies carry the same message id and body, so a browse yields the first alone and a
replay moves the first and drops the others: each is counted once.

On quorum queues the return is applied through the queue's Raft log, so a browse waits
(bounded) until the queue shows what it took again before it ends: a replay or browse
right after it then sees every letter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, Collection

import aiormq.exceptions as amqp
import tenacity
from aio_pika.abc import AbstractChannel as PikaChannel
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from adapters.rabbitmq.convert import properties, to_message
from adapters.rabbitmq.errors import publish_error
from adapters.rabbitmq.link import Link
from bus.message import Message

log = logging.getLogger("bus.rabbitmq")
BATCH = 500
PUT_BACK_WAIT = 5.0  # how long a browse waits for a quorum queue to show its return

Identity = tuple[str, bytes]
Taken = tuple[DeliveredMessage, Message]


def identity(message: Message) -> Identity:
    """What two copies of one dead letter share: the message id and the body."""
    return message.id, hashlib.blake2b(message.body, digest_size=16).digest()


async def browse(link: Link, queue: str) -> AsyncGenerator[Message, None]:
    """Every message in ``queue`` now, oldest first, a second copy of one left out; the
    queue is left as it was."""
    channel = await link.channel(confirms=False)
    try:
        raw = await channel.get_underlay_channel()
        count = await _count(raw, queue)
        last_tag, taken = 0, 0
        seen: set[Identity] = set()
        try:
            for _ in range(count):
                got = await raw.basic_get(queue, no_ack=False)
                if not isinstance(got.delivery, Basic.GetOk):
                    break
                last_tag, taken = getattr(got.delivery, "delivery_tag", 0), taken + 1
                message = to_message(got)
                if (key := identity(message)) not in seen:
                    seen.add(key)
                    yield message
        finally:
            if taken and not channel.is_closed:
                await _put_back(raw, queue, last_tag, taken)
    finally:
        await _close(channel)


async def _put_back(raw: AbstractChannel, queue: str, last_tag: int, taken: int) -> None:
    """Return what a browse took and wait, briefly, until the queue shows it again.

    A classic queue has them back before it answers the next command on this channel;
    a quorum queue applies the return through its Raft log a moment later, and a replay
    or browse that counted in between would miss them. The wait is bounded because
    another client may legitimately be draining the queue meanwhile.
    """
    try:
        await raw.basic_nack(last_tag, multiple=True, requeue=True)
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_delay(PUT_BACK_WAIT),
            wait=tenacity.wait_exponential(multiplier=0.005, max=0.2),
            retry=tenacity.retry_if_result(lambda count: count < taken),
        )
        await retrying(_count, raw, queue)
    except Exception as exc:  # closing the channel returns them anyway; RetryError: drained
        log.debug("returning browsed messages to %r: %s", queue, exc)


async def replay(
    link: Link, queue: str, target: str, *, user: str, ids: Collection[str] | None = None
) -> int:
    """Move the messages in ``queue`` now, or those of them with these ``ids``, to queue
    ``target``; return how many moved. A second copy of a letter already moved is acked
    and dropped, not counted. The others stay unacked until the end, then go back where
    they were, in order, as after a browse."""
    wanted = None if ids is None else set(ids)
    if wanted is not None and not wanted:
        return 0
    channel = await link.channel(confirms=True)
    try:
        raw = await channel.get_underlay_channel()
        left = await _count(raw, queue)
        moved = kept = last_tag = 0
        seen: set[Identity] = set()
        try:
            while left > 0:
                batch = await _take(raw, queue, min(left, BATCH))
                if not batch:
                    break
                left -= len(batch)
                last_tag = _tag(batch[-1])
                fresh: list[Taken] = []
                again: list[Taken] = []
                for got in batch:
                    message = to_message(got)
                    if wanted is not None and message.id not in wanted:
                        kept += 1  # stays unacked: no memory held for it here
                        continue
                    key = identity(message)
                    (again if key in seen else fresh).append((got, message))
                    seen.add(key)
                moved += await _move(raw, fresh, target, user)
                for got, _ in again:  # its first copy is confirmed in ``target`` by now
                    await raw.basic_ack(_tag(got), wait=False)
        finally:
            # After the acks above on this channel, so it returns only what stays (and,
            # on a failure, what was not moved).
            if kept and not channel.is_closed:
                await _put_back(raw, queue, last_tag, kept)
        return moved
    finally:
        await _close(channel)


async def _count(raw: AbstractChannel, queue: str) -> int:
    try:
        ok = await raw.queue_declare(queue, passive=True)
    except amqp.ChannelNotFoundEntity:
        return 0  # no dead letters were ever parked for this group
    return int(ok.message_count or 0)


async def _take(raw: AbstractChannel, queue: str, n: int) -> list[DeliveredMessage]:
    batch: list[DeliveredMessage] = []
    for _ in range(n):
        got = await raw.basic_get(queue, no_ack=False)
        if not isinstance(got.delivery, Basic.GetOk):
            break
        batch.append(got)
    return batch


async def _move(raw: AbstractChannel, batch: list[Taken], target: str, user: str) -> int:
    async def one(got: DeliveredMessage, message: Message) -> None:
        await raw.basic_publish(
            message.body,
            exchange="",
            routing_key=target,
            properties=properties(message, user=user),
            mandatory=True,
        )
        await raw.basic_ack(_tag(got), wait=False)

    results = await asyncio.gather(*(one(*item) for item in batch), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise publish_error(failed[0], f"queue {target!r} (replay)")
    return len(batch)


def _tag(got: DeliveredMessage) -> int:
    return int(getattr(got.delivery, "delivery_tag", 0))


async def _close(channel: PikaChannel) -> None:
    if channel.is_closed:
        return
    try:
        await channel.close()
    except Exception as exc:
        log.debug("closing a browsing channel: %s", exc)

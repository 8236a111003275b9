"""Reading a dead-letter queue without consuming it, and moving it back (replay).

Browsing takes the messages present with basic.get (no auto-ack) on a channel of its
own, at most as many as the queue held when we looked, then closes that channel: RabbitMQ
puts every one of them back where it was, in order. Replay takes them the same way,
publishes each (confirmed) to the group's queue through the default exchange, and acks
only what the broker confirmed.

On quorum queues the return is applied through the queue's Raft log, so a browse waits
(bounded) until the queue shows what it took again before it ends: a replay or browse
right after it then sees every letter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import aiormq.exceptions as amqp
import anyio
from aio_pika.abc import AbstractChannel as PikaChannel
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from adapters.rabbitmq.convert import properties, to_message
from adapters.rabbitmq.errors import publish_error
from adapters.rabbitmq.link import Link
from bus.message import Message

log = logging.getLogger("bus.rabbitmq")
BATCH = 500
PUT_BACK_POLLS = 500  # 10 ms apart: how long a browse waits for a quorum queue's return


async def browse(link: Link, queue: str) -> AsyncGenerator[Message, None]:
    """Every message in ``queue`` now, oldest first; the queue is left as it was."""
    channel = await link.channel(confirms=False)
    try:
        raw = await channel.get_underlay_channel()
        count = await _count(raw, queue)
        last_tag, taken = 0, 0
        try:
            for _ in range(count):
                got = await raw.basic_get(queue, no_ack=False)
                if not isinstance(got.delivery, Basic.GetOk):
                    break
                last_tag, taken = getattr(got.delivery, "delivery_tag", 0), taken + 1
                yield to_message(got)
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
        for _ in range(PUT_BACK_POLLS):
            if await _count(raw, queue) >= taken:
                return
            await anyio.sleep(0.01)
    except Exception as exc:  # closing the channel returns them anyway
        log.debug("returning browsed messages to %r: %s", queue, exc)


async def replay(link: Link, queue: str, target: str) -> int:
    """Move the messages in ``queue`` now to queue ``target``; return how many moved."""
    channel = await link.channel(confirms=True)
    try:
        raw = await channel.get_underlay_channel()
        left = await _count(raw, queue)
        moved = 0
        while left > 0:
            batch = await _take(raw, queue, min(left, BATCH))
            if not batch:
                break
            left -= len(batch)
            moved += await _move(raw, batch, target)
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


async def _move(raw: AbstractChannel, batch: list[DeliveredMessage], target: str) -> int:
    async def one(got: DeliveredMessage) -> None:
        message = to_message(got)
        await raw.basic_publish(
            message.body,
            exchange="",
            routing_key=target,
            properties=properties(message),
            mandatory=True,
        )
        await raw.basic_ack(getattr(got.delivery, "delivery_tag", 0), wait=False)

    results = await asyncio.gather(*(one(got) for got in batch), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise publish_error(failed[0], f"queue {target!r} (replay)")
    return len(batch)


async def _close(channel: PikaChannel) -> None:
    if channel.is_closed:
        return
    try:
        await channel.close()
    except Exception as exc:
        log.debug("closing a browsing channel: %s", exc)

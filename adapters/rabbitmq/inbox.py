"""Replies over RabbitMQ direct reply-to (``amq.rabbitmq.reply-to``).

An inbox is one channel consuming ``amq.rabbitmq.reply-to`` with no-ack. RabbitMQ routes
a reply to the channel that published its request, so requests naming this inbox are
published on this same channel (with confirms), many in flight at once. The inbox's
``address`` is a name local to this transport; on the wire the request carries
``amq.rabbitmq.reply-to``, which the broker rewrites into the channel's own address.
After a reconnect the inbox consumes again on a new channel; replies to requests sent
on the old one are lost, and those requests time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel, DeliveredMessage

from adapters.rabbitmq.convert import to_message
from adapters.rabbitmq.publish import ChannelSource
from bus.message import Message, new_id

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class RabbitInbox:
    """See bus.transport.Inbox."""

    def __init__(self) -> None:
        self.address = f"{DIRECT_REPLY_TO}#{new_id()}"
        self._buffer: asyncio.Queue[Message | None] = asyncio.Queue()
        self._closed = False
        self.source: ChannelSource | None = None
        """The channel requests to this inbox must be published on."""
        self._on_close: Callable[[], Awaitable[None]] | None = None

    def attach(self, source: ChannelSource, on_close: Callable[[], Awaitable[None]]) -> None:
        """``source`` keeps this inbox's channel; ``on_close`` closes it."""
        self.source = source
        self._on_close = on_close

    async def setup(self, channel: AbstractChannel) -> None:
        """Start consuming direct reply-to on ``channel`` (called on every (re)open)."""
        await channel.basic_consume(DIRECT_REPLY_TO, self.on_message, no_ack=True)

    async def on_message(self, delivered: DeliveredMessage) -> None:
        if not self._closed:
            self._buffer.put_nowait(to_message(delivered))

    def __aiter__(self) -> RabbitInbox:
        return self

    async def __anext__(self) -> Message:
        message = await self._buffer.get()
        if message is None:
            self._buffer.put_nowait(None)
            raise StopAsyncIteration
        return message

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            await self._on_close()
        self._buffer.put_nowait(None)

"""One member of one group: deliveries from the group's queue, settled by the core.

The aiormq consume callback only wraps each message and puts it on an asyncio.Queue;
``__anext__`` takes from it (cancel-safe, many tasks may wait at once). Acks are written
without waiting for the socket to drain, so they pipeline. A delivery whose channel died
(a reconnect) is skipped or its ack ignored: the broker hands the message out again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiormq.abc import AbstractChannel, DeliveredMessage

from adapters.rabbitmq.convert import delivery_count, to_message
from bus.message import Message

log = logging.getLogger("bus.rabbitmq")

Resend = Callable[[Message, float | None], Awaitable[None]]
"""Publish a copy of a message, confirmed: after a delay in seconds, or None to park it."""


class RabbitDelivery:
    """One delivery; the first settle wins, later ones do nothing."""

    __slots__ = ("_channel", "_resend", "_settled", "_tag", "message", "redeliveries")

    def __init__(
        self,
        message: Message,
        redeliveries: int,
        channel: AbstractChannel,
        tag: int,
        resend: Resend,
    ) -> None:
        self.message = message
        self.redeliveries = redeliveries
        self._channel = channel
        self._tag = tag
        self._resend = resend
        self._settled = False

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        if self._channel.is_closed:
            return  # the broker requeued it when the channel closed
        try:
            await self._channel.basic_ack(self._tag, wait=False)
        except Exception as exc:  # channel lost meanwhile: it will be redelivered
            log.debug("ack of %s not sent: %s", self.message.id, exc)

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        if self._settled:
            return
        await self._resend(self.message.with_headers(dict(headers)), max(0.0, delay))
        await self.ack()

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        if self._settled:
            return
        await self._resend(self.message.with_headers(dict(headers)), None)
        await self.ack()


class RabbitConsumer:
    """The deliveries of one queue to this process; see bus.transport.Consumer."""

    def __init__(self, resend: Resend) -> None:
        self._resend = resend
        self._buffer: asyncio.Queue[RabbitDelivery | None] = asyncio.Queue()
        self._closed = False
        self._on_close: Callable[[], Awaitable[None]] | None = None

    def attach(self, on_close: Callable[[], Awaitable[None]]) -> None:
        """``on_close`` closes the channel this consumer reads from."""
        self._on_close = on_close

    async def on_message(self, delivered: DeliveredMessage) -> None:
        """The aiormq consume callback."""
        tag = getattr(delivered.delivery, "delivery_tag", None)
        if self._closed or tag is None:
            return  # closing: the channel's close requeues it
        self._buffer.put_nowait(
            RabbitDelivery(
                to_message(delivered),
                delivery_count(delivered),
                delivered.channel,
                tag,
                self._resend,
            )
        )

    def __aiter__(self) -> RabbitConsumer:
        return self

    async def __anext__(self) -> RabbitDelivery:
        while True:
            delivery = await self._buffer.get()
            if delivery is None:
                self._buffer.put_nowait(None)  # wake the next waiter too
                raise StopAsyncIteration
            if not delivery._channel.is_closed:
                return delivery

    def poll(self) -> RabbitDelivery | None:
        """A delivery already at hand, without waiting; None when there is none (the
        core's fast path: it spares a cancel scope per message)."""
        buffer = self._buffer
        while not buffer.empty():
            delivery = buffer.get_nowait()
            if delivery is None:
                buffer.put_nowait(None)  # closed: __anext__ says so
                return None
            if not delivery._channel.is_closed:
                return delivery
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            await self._on_close()
        self._buffer.put_nowait(None)

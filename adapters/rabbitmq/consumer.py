"""One member of one group: deliveries from the group's queue, settled by the core.

The aiormq consume callback only wraps each message and puts it on an asyncio.Queue;
``__anext__`` takes from it (cancel-safe, many tasks may wait at once). Acks are written
without waiting for the socket to drain, so they pipeline. A delivery whose channel died
(a reconnect) is skipped or its ack ignored: the broker hands the message out again.

Stopping (a graceful close's first step) cancels the AMQP consumer and returns what was
fetched but never handed out without counting it as a redelivery: a nack would set the
redelivered flag (classic queues) and raise x-delivery-count (quorum queues), so each one
is republished, confirmed, to the group's queue as it came, and then acked. A crash
between the two leaves a duplicate, which at-least-once allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiormq.abc import AbstractChannel, DeliveredMessage

from adapters.rabbitmq.convert import delivery_count, to_message
from bus.message import ATTEMPT, Message

log = logging.getLogger("bus.rabbitmq")

Resend = Callable[[Message, float | None], Awaitable[None]]
"""Publish a copy of a message, confirmed: after a delay in seconds, or None to park it."""

GIVE_BACK_TIMEOUT = 5.0
"""How long a give-back or a consumer cancel may wait on the broker."""
RETURN_TIMEOUT = 30.0
"""How long a stopping consumer spends returning what it fetched and never handed out."""


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
        # Raises when the copy was not confirmed: still unsettled, the core gives it back.
        await self._resend(self.message.with_headers(dict(headers)), max(0.0, delay))
        await self.ack()

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        if self._settled:
            return
        await self._resend(self.message.with_headers(dict(headers)), None)
        await self.ack()

    async def give_back(self) -> None:
        if self._settled:
            return
        self._settled = True
        if self._channel.is_closed:
            return  # the broker requeued it when the channel closed
        try:
            async with asyncio.timeout(GIVE_BACK_TIMEOUT):
                await self._channel.basic_nack(self._tag, requeue=True, wait=False)
        except Exception as exc:  # channel lost meanwhile: that requeued it too
            log.debug("give-back of %s not sent: %s", self.message.id, exc)

    async def put_back(self) -> None:
        """Return it to the group NOT counted as a redelivery: a confirmed copy to the
        group's queue, then an ack. Redeliveries it already had ride in ``bus-attempt``,
        so its ``ctx.attempt`` stays what it was. If the copy fails it is given back."""
        if self._settled or self._channel.is_closed:
            return
        try:
            await self._resend(_counted(self.message, self.redeliveries), 0.0)
        except Exception as exc:
            log.warning("returning %s to its group failed (%s); requeuing it", self.message.id, exc)
            await self.give_back()
            return
        await self.ack()


def _counted(message: Message, redeliveries: int) -> Message:
    """``message`` with ``redeliveries`` added to its ``bus-attempt``, unless it has none
    or its attempt header is not ours to read."""
    if not redeliveries:
        return message
    raw = message.headers.get(ATTEMPT) or "1"
    if not raw.isdigit():
        return message
    return message.with_headers({**message.headers, ATTEMPT: str(int(raw) + redeliveries)})


class RabbitConsumer:
    """The deliveries of one queue to this process; see bus.transport.Consumer."""

    def __init__(self, resend: Resend, *, ephemeral: bool = False) -> None:
        self._resend = resend
        self._ephemeral = ephemeral
        self._buffer: asyncio.Queue[RabbitDelivery | None] = asyncio.Queue()
        self._closed = False
        self._fetching = True
        self._stopped = asyncio.Event()
        self._consuming: tuple[AbstractChannel, str] | None = None
        self._returning: set[asyncio.Task[None]] = set()
        self._on_close: Callable[[], Awaitable[None]] | None = None

    @property
    def fetching(self) -> bool:
        """False once stopping: a re-opened channel must not consume again."""
        return self._fetching and not self._closed

    def attach(self, on_close: Callable[[], Awaitable[None]]) -> None:
        """``on_close`` closes the channel this consumer reads from."""
        self._on_close = on_close

    def consuming(self, channel: AbstractChannel, consumer_tag: str) -> None:
        """The AMQP consumer feeding this one now (set on every (re)open)."""
        self._consuming = (channel, consumer_tag)

    async def on_message(self, delivered: DeliveredMessage) -> None:
        """The aiormq consume callback."""
        tag = getattr(delivered.delivery, "delivery_tag", None)
        if self._closed or tag is None:
            return  # closing: the channel's close requeues it
        delivery = RabbitDelivery(
            to_message(delivered), delivery_count(delivered), delivered.channel, tag, self._resend
        )
        if self._fetching:
            self._buffer.put_nowait(delivery)
        elif not self._ephemeral:  # arrived while the consumer was being cancelled
            self._return(delivery)

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

    async def stop_fetching(self) -> None:
        if not self._fetching:
            await self._stopped.wait()
            return
        self._fetching = False
        try:
            await self._cancel()
            for delivery in self._drain():
                if not self._ephemeral:  # an ephemeral group ends with its member
                    self._return(delivery)
            if self._returning:
                await asyncio.wait(self._returning, timeout=RETURN_TIMEOUT)
        finally:
            self._stopped.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._fetching = False
        self._closed = True
        if self._returning:  # copies still unconfirmed: give them a moment, then drop
            _, pending = await asyncio.wait(self._returning, timeout=GIVE_BACK_TIMEOUT)
            for task in pending:
                task.cancel()
        if self._on_close is not None:
            await self._on_close()
        self._drain()
        self._buffer.put_nowait(None)

    async def _cancel(self) -> None:
        """Tell the broker to stop pushing; an ephemeral consumer keeps its AMQP consumer
        (cancelling would auto-delete its queue) and just stops handing out."""
        if self._ephemeral or self._consuming is None:
            return
        channel, tag = self._consuming
        if channel.is_closed:
            return  # gone with the channel, which requeued what it held
        try:
            async with asyncio.timeout(GIVE_BACK_TIMEOUT):
                await channel.basic_cancel(tag)
        except Exception as exc:
            log.debug("cancelling consumer %s: %s", tag, exc)

    def _drain(self) -> list[RabbitDelivery]:
        """Whatever is buffered, taken out; the end-of-stream mark put back."""
        out: list[RabbitDelivery] = []
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                item = self._buffer.get_nowait()
                if item is not None and not item._channel.is_closed:
                    out.append(item)
        self._buffer.put_nowait(None)
        return out

    def _return(self, delivery: RabbitDelivery) -> None:
        task = asyncio.get_running_loop().create_task(delivery.put_back())
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

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

On a quorum queue the cancel itself must find nothing on its way to us: RabbitMQ's
channel forgets the consumer when it reads basic.cancel, and a delivery the queue sent
before it read the cancel too is returned to the queue by the channel, counted, and never
reaches the client (rabbitmq-server#3729, ``rabbit_fifo_client:handle_delivery``). Any
ack frees a prefetch slot the queue refills, so while stopping every settle is held
here, the cancel waits until the queue can send nothing more (every slot taken, or no
delivery for a moment), and the held settles go out once the broker confirmed the cancel.
The originals of the copies are acked in one frame where the channel allows (see
``_ack_returned``): a quorum queue's channel can drop a burst of acks sent just before it
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping

from aiormq.abc import AbstractChannel, DeliveredMessage

from adapters.rabbitmq.convert import delivery_count, to_message
from bus.message import ATTEMPT, Message

log = logging.getLogger("bus.rabbitmq")

Resend = Callable[[Message, float | None], Awaitable[None]]
"""Publish a copy of a message, confirmed: after a delay in seconds, or None to park it."""

QUIET = 0.1
"""A stopping consumer cancels once no delivery came for this long (unless every prefetch
slot is taken before): what the broker dispatched before the stop has arrived by then."""
QUIET_LIMIT = 1.0
"""The longest a stopping consumer waits for the deliveries to stop before it cancels."""
GIVE_BACK_TIMEOUT = 5.0
"""How long a give-back or a consumer cancel may wait on the broker."""
RETURN_TIMEOUT = 30.0
"""How long a stopping consumer spends returning what it fetched and never handed out."""


class RabbitDelivery:
    """One delivery; the first settle wins, later ones do nothing."""

    __slots__ = ("_channel", "_owner", "_resend", "_settled", "_tag", "message", "redeliveries")

    def __init__(
        self,
        message: Message,
        redeliveries: int,
        channel: AbstractChannel,
        tag: int,
        resend: Resend,
        owner: RabbitConsumer | None = None,
    ) -> None:
        self.message = message
        self.redeliveries = redeliveries
        self._channel = channel
        self._tag = tag
        self._resend = resend
        self._owner = owner
        self._settled = False

    def ack_nowait(self) -> bool:
        return False  # an ack is a frame to send: awaited through ``ack``

    def payload(self) -> tuple[bytes, str | None]:
        return self.message.body, self.message.content_type

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        return self.message.headers

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        owner = self._owner
        if owner is not None and owner.holds(self, ack=True):
            return  # sent once the consumer's cancel is confirmed
        await self._send_ack()

    async def _send_ack(self) -> None:
        if self._channel.is_closed:
            return  # the broker requeued it when the channel closed
        try:
            await self._channel.basic_ack(self._tag, wait=False)
        except Exception as exc:  # channel lost meanwhile: it will be redelivered
            log.debug("ack of %s not sent: %s", self.message.id, exc)
        self._sent()

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
        owner = self._owner
        if owner is not None and owner.holds(self, ack=False):
            return  # sent once the consumer's cancel is confirmed
        await self._send_nack()

    async def _send_nack(self) -> None:
        if self._channel.is_closed:
            return  # the broker requeued it when the channel closed
        try:
            async with asyncio.timeout(GIVE_BACK_TIMEOUT):
                await self._channel.basic_nack(self._tag, requeue=True, wait=False)
        except Exception as exc:  # channel lost meanwhile: that requeued it too
            log.debug("give-back of %s not sent: %s", self.message.id, exc)
        self._sent()

    def _sent(self) -> None:
        """Its ack or nack is queued: only now may an ack with ``multiple`` pass it."""
        if self._owner is not None:
            self._owner.settled(self)

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
        if self._owner is None:
            await self.ack()
        else:  # acked with the others returned, in as few frames as the channel allows
            self._settled = True
            self._owner.returned(self)


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
    """The deliveries of one queue to this process; see bus.transport.Consumer.

    ``prefetch``: the channel's basic.qos count, when known, lets a stop cancel as soon as
    every slot is taken instead of after a quiet moment."""

    def __init__(
        self, resend: Resend, *, ephemeral: bool = False, prefetch: int | None = None
    ) -> None:
        self._resend = resend
        self._ephemeral = ephemeral
        self._prefetch = prefetch or None
        self._buffer: asyncio.Queue[RabbitDelivery | None] = asyncio.Queue()
        self._closed = False
        self._fetching = True
        self._stopped = asyncio.Event()
        self._consuming: tuple[AbstractChannel, str] | None = None
        self._returning: set[asyncio.Task[None]] = set()
        self._on_close: Callable[[], Awaitable[None]] | None = None
        # the channel deliveries come on, and their tags not settled on it
        self._delivering: AbstractChannel | None = None
        self._unsettled: set[int] = set()
        self._returned: list[RabbitDelivery] = []  # copied back, their acks not sent yet
        # while stopping: settles not sent yet (True: an ack, False: a requeuing nack),
        # deliveries that arrived after the stop began, and a wake-up for each arrival
        self._holding = False
        self._held: list[tuple[RabbitDelivery, bool]] = []
        self._late: list[RabbitDelivery] = []
        self._arrived = asyncio.Event()

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

    def holds(self, delivery: RabbitDelivery, *, ack: bool) -> bool:
        """While the consumer is being cancelled, keep ``delivery``'s settle (an ack, or a
        requeuing nack) until the broker confirmed the cancel: True if kept."""
        if not self._holding:
            return False
        self._held.append((delivery, ack))
        return True

    def settled(self, delivery: RabbitDelivery) -> None:
        """An ack or nack of ``delivery`` is queued to be written."""
        if delivery._channel is self._delivering:
            self._unsettled.discard(delivery._tag)

    def returned(self, delivery: RabbitDelivery) -> None:
        """``delivery`` was copied back to its queue; its ack goes with the others'."""
        self._returned.append(delivery)

    async def on_message(self, delivered: DeliveredMessage) -> None:
        """The aiormq consume callback."""
        tag = getattr(delivered.delivery, "delivery_tag", None)
        if self._closed or tag is None:
            return  # closing: the channel's close requeues it
        delivery = RabbitDelivery(
            to_message(delivered),
            delivery_count(delivered),
            delivered.channel,
            tag,
            self._resend,
            self,
        )
        if delivered.channel is not self._delivering:  # a re-opened channel
            self._delivering, self._unsettled = delivered.channel, set()
        self._unsettled.add(tag)
        if self._fetching:
            self._buffer.put_nowait(delivery)
        elif not self._ephemeral:  # arrived while the consumer was being cancelled
            if self._holding:
                self._late.append(delivery)
                self._arrived.set()
            else:
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
            if not self._ephemeral:
                self._holding = True
                try:
                    await self._until_nothing_in_flight()
                    await self._cancel()
                    await asyncio.sleep(0)  # deliveries read before the cancel-ok reach us
                finally:
                    self._release()
            for delivery in self._drain():
                if not self._ephemeral:  # an ephemeral group ends with its member
                    self._return(delivery)
            if self._returning:
                await asyncio.wait(self._returning, timeout=RETURN_TIMEOUT)
            await self._ack_returned(every=False)
        finally:
            self._stopped.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._fetching = False
        self._release()  # a stop cut short: its held acks still go before the channel closes
        self._closed = True
        if self._returning:  # copies still unconfirmed: give them a moment, then drop
            _, pending = await asyncio.wait(self._returning, timeout=GIVE_BACK_TIMEOUT)
            for task in pending:
                task.cancel()
        await self._ack_returned(every=True)
        if self._on_close is not None:
            await self._on_close()
        self._drain()
        self._buffer.put_nowait(None)

    async def _until_nothing_in_flight(self) -> None:
        """Until the broker can have no delivery for us on its way (settles are held
        meanwhile, so no prefetch slot frees): every slot taken, or no delivery for
        ``QUIET`` seconds; at most ``QUIET_LIMIT``."""
        if self._consuming is None or self._consuming[0].is_closed:
            return
        loop = asyncio.get_running_loop()
        limit = loop.time() + QUIET_LIMIT
        quiet_from = loop.time()
        while self._prefetch is None or len(self._unsettled) < self._prefetch:
            until = min(quiet_from + QUIET, limit)
            if loop.time() >= until or self._consuming[0].is_closed:
                return
            self._arrived.clear()
            try:
                async with asyncio.timeout_at(until):
                    await self._arrived.wait()
            except TimeoutError:
                continue
            quiet_from = loop.time()

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

    def _release(self) -> None:
        """Stop holding: send the held settles, and queue the late deliveries to be
        returned."""
        self._holding = False
        held, self._held = self._held, []
        late, self._late = self._late, []
        if held:
            self._track(_send_held(held))
        for delivery in late:
            self._buffer.put_nowait(delivery)  # drained and returned with the rest

    async def _ack_returned(self, *, every: bool) -> None:
        """Ack the originals of what was copied back: those below which nothing else is
        unsettled in one frame (``multiple``), the rest, with ``every``, one by one.

        One frame, because a quorum queue's channel sends at most 32 unapplied commands
        to the queue and keeps later acks to send when earlier ones are applied: a
        channel closed meanwhile drops them, and the queue returns those messages
        counted. A prefetch's worth of acks just before the close did that."""
        channel = self._delivering
        returned, self._returned = self._returned, []
        if channel is None or channel.is_closed:
            return  # the broker requeued them when the channel closed: the copies are dups
        mine = {d._tag: d for d in returned if d._channel is channel}
        last = None
        for tag in sorted(self._unsettled):
            if tag not in mine:
                break
            last = tag
        if last is not None:
            self._unsettled.difference_update(t for t in mine if t <= last)
            try:
                await channel.basic_ack(last, multiple=True, wait=False)
            except Exception as exc:  # channel lost meanwhile: they will be redelivered
                log.debug("ack of %d returned messages not sent: %s", len(mine), exc)
        rest = [d for tag, d in mine.items() if last is None or tag > last]
        if not every:
            self._returned.extend(rest)
            return
        for delivery in rest:
            await delivery._send_ack()

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
        self._track(delivery.put_back())

    def _track(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)


async def _send_held(held: list[tuple[RabbitDelivery, bool]]) -> None:
    for delivery, ack in held:
        if ack:
            await delivery._send_ack()
        else:
            await delivery._send_nack()

"""The one path a delivery takes: read its headers, decode, call the handler, reply, settle.

Whatever happens on the way, the delivery ends settled (acked, retried, dead-lettered) or
given back to its group within a bounded time, and the worker that carried it is free for
the next one. Telemetry wraps this path from outside (``bus.observed.Observed``); it is
not a second copy of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import anyio
import msgspec

from bus import codec, logs
from bus.clock import REAL, Clock
from bus.context import Context, Speaker
from bus.dead_letter import type_name
from bus.errors import DecodeError
from bus.message import ATTEMPT, DEADLINE, JSON, Message
from bus.outcome import settle_failure
from bus.requests import Requests
from bus.service import Subscription
from bus.transport import Delivery

log = logging.getLogger("bus.dispatch")

GIVE_BACK_TIMEOUT = 5.0
"""How long giving a message back may take before the core stops waiting for it."""

Kind = Literal["handled", "retried", "dead_lettered", "given_back", "skipped", "replied_error"]


class Outcome:
    """What became of one delivery, for telemetry: its kind, the handler's error, the
    retry delay."""

    __slots__ = ("delay", "exc", "kind")

    def __init__(
        self, kind: Kind, exc: BaseException | None = None, delay: float | None = None
    ) -> None:
        self.kind = kind
        self.exc = exc
        self.delay = delay


HANDLED = Outcome("handled")
SKIPPED = Outcome("skipped")
GIVEN_BACK = Outcome("given_back")

Handle = Callable[[Delivery], Awaitable[Outcome]]

_DECODERS = 16  # content types a Handling keeps a decoder for
_current_set = logs.current.set


def attempt_of(headers: Mapping[str, str], redeliveries: int) -> int:
    """Which call of the handler this delivery is, from 1. A ``bus-attempt`` the core
    cannot read (a foreign or forged value) counts as absent: the message is handled, not
    stuck on a parse error."""
    raw = headers.get(ATTEMPT)
    attempt = 1
    if raw is not None:
        try:
            attempt = int(raw)
        except ValueError:
            log.warning("ignored an unreadable %s header %r", ATTEMPT, raw[:64])
        attempt = min(max(attempt, 1), 1_000_000)
    return attempt + max(redeliveries, 0)


def expired(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> bool:
    """A request whose caller stopped waiting: answering it would only repeat its side
    effects for nobody. An unreadable deadline counts as none. ``now`` is the bus's
    clock's UNIX time."""
    deadline = headers.get(DEADLINE)
    if deadline is None:
        return False
    try:
        return now() > float(deadline)
    except ValueError:
        return False


class Handling:
    """Carries deliveries of one subscription down the path (see the module)."""

    def __init__(
        self,
        sub: Subscription,
        speaker: Speaker,
        replies: Requests,
        settle_timeout: float,
        clock: Clock = REAL,
    ) -> None:
        self._sub = sub
        self._now = clock.time
        self._speaker = speaker
        self._replies = replies
        self._settle_timeout = settle_timeout
        self._handler = sub.handler
        self._payload_type = sub.payload_type
        self._reply = sub.reply
        self._wants_context = sub.wants_context
        self._topic = sub.topic
        self._group = sub.group
        # The decoder for each content type seen (a handful; bounded against a producer
        # sending ever new ones), so the hot path is one dict probe and one call.
        self._decoders: dict[str | None, codec.Decode] = {}

    def _decode(self, message: Message) -> Any:
        """The payload of ``message`` (DecodeError if it has none the handler takes),
        through a decoder kept for its content type."""
        content_type = message.content_type
        decode = self._decoders.get(content_type)
        if decode is None:
            canonical = codec.normalize(content_type)
            if canonical is None and self._payload_type is not bytes:
                return codec.decode(message.body, self._payload_type, content_type)  # raises
            decode = codec.decoder(self._payload_type, canonical or JSON)
            if len(self._decoders) < _DECODERS:
                self._decoders[content_type] = decode
        try:
            return decode(message.body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # Again, for the DecodeError saying what was wrong.
            return codec.decode(message.body, self._payload_type, content_type)

    def begin(self, delivery: Delivery) -> Awaitable[Any] | None:
        """The common case of the path, for a worker that awaits the handler itself and
        then calls ``handled`` or ``failed``: the handler's awaitable. None where the
        whole path (``__call__``) must run instead: a request (it is answered), a
        content type not seen yet, a body that does not decode.

        Why a second entry: a coroutine of ours around every handler call was a sixth of
        the Kafka consume path's time (benchmarks/RESULTS.md). What follows the handler
        is shared with ``__call__`` (``handled``, ``failed``)."""
        if self._reply:
            return None
        body, content_type = delivery.payload()  # the message may not be built yet
        decode = self._decoders.get(content_type)
        if decode is None:
            return None
        try:
            payload = decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if logs.wanted:  # a MessageFilter exists (see bus.logs)
            message = delivery.message
            _current_set((message.id, message.correlation_id, self._topic, self._group))
        if self._wants_context:
            message = delivery.message
            attempt = attempt_of(message.headers, delivery.redeliveries)
            ctx = Context(self._speaker, message, self._topic, self._group, attempt)
            return self._handler(payload, ctx)
        return self._handler(payload)

    async def handled(self, delivery: Delivery) -> Outcome:
        """The handler returned: ack (an ack that fails gives the delivery back)."""
        try:  # no timer on the hot path: an ack waits on no broker round trip
            if not delivery.ack_nowait():
                await delivery.ack()
        except Exception as exc:
            await self._give_back(delivery, exc)
            return GIVEN_BACK
        return HANDLED

    async def failed(
        self, delivery: Delivery, exc: Exception | asyncio.CancelledError, attempt: int = 0
    ) -> Outcome:
        """The handler (or decoding) raised ``exc``: settle the failure. A cancellation of
        our own (closing past the deadline) is raised again and leaves the message
        unsettled for redelivery; one the handler's code raised by itself is just a
        failure of the handler, and must not take the worker down."""
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise exc
        return await self._failed(delivery, exc, attempt)

    async def __call__(self, delivery: Delivery) -> Outcome:
        message = delivery.message
        if logs.wanted:  # a MessageFilter exists (see bus.logs)
            _current_set((message.id, message.correlation_id, self._topic, self._group))
        if self._reply and expired(message.headers, self._now):
            log.info(
                "skipped request %s on %s: its caller stopped waiting",
                message.id, self._topic, extra={"message_id": message.id, "topic": self._topic},
            )  # fmt: skip
            await self._settle(delivery, delivery.ack())
            return SKIPPED
        # The attempt is read only where it is used (a Context, a failure): the common
        # case, a handler without a Context that succeeds, never needs it.
        attempt = 0
        try:
            payload = self._decode(message)
            if self._wants_context:
                attempt = attempt_of(message.headers, delivery.redeliveries)
                ctx = Context(self._speaker, message, self._topic, self._group, attempt)
                result = await self._handler(payload, ctx)
            else:
                result = await self._handler(payload)
        except (asyncio.CancelledError, Exception) as exc:
            return await self.failed(delivery, exc, attempt)
        if self._reply:
            await self._replies.reply(message, result)
        return await self.handled(delivery)

    async def _failed(self, delivery: Delivery, exc: BaseException, attempt: int) -> Outcome:
        """``attempt`` 0: not read yet."""
        sub = self._sub
        if not attempt:
            attempt = attempt_of(delivery.message.headers, delivery.redeliveries)
        if sub.reply:
            # The caller learns of it now; only poison input is also parked.
            await self._replies.reply_error(delivery.message, exc)
            if not isinstance(exc, DecodeError):
                settled = await self._settle(delivery, delivery.ack())
                return Outcome("replied_error", exc) if settled else GIVEN_BACK
        delay: float | None = None

        async def settle() -> None:
            nonlocal delay
            delay = await settle_failure(
                delivery, exc, topic=sub.topic, group=sub.group, attempt=attempt, retry=sub.retry
            )

        if not await self._settle(delivery, settle()):
            return GIVEN_BACK
        if delay is not None:
            return Outcome("retried", exc, delay)
        return Outcome("dead_lettered", exc)

    async def _settle(self, delivery: Delivery, settling: Awaitable[None]) -> bool:
        """Run ``settling`` within the settle timeout; if it fails, give the delivery back
        so it never stays held. True when it settled."""
        try:
            with anyio.fail_after(self._settle_timeout):
                await settling
            return True
        except Exception as exc:
            await self._give_back(delivery, exc)
            return False

    async def _give_back(self, delivery: Delivery, exc: Exception) -> None:
        message = delivery.message
        log.error(
            "could not settle message %s of %s for group %s (%s: %s); giving it back",
            message.id, self._sub.topic, self._sub.group, type_name(exc), exc,
            extra={"message_id": message.id, "topic": self._sub.topic},
        )  # fmt: skip
        try:
            with anyio.move_on_after(GIVE_BACK_TIMEOUT):
                await delivery.give_back()
        except Exception as err:  # the adapter returns it on close at the latest
            log.error("could not give message %s back: %s: %s", message.id, type_name(err), err)

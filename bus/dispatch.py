"""Runs one subscription: a fixed pool of workers pulling from one Consumer.

A pool of ``concurrency`` workers (rather than a task per message) bounds in-flight
handlers and spends nothing per message on spawning. Closing stops the intake first;
handlers already running finish (up to the bus's deadline) and settle; what was never
started stays unsettled, so the adapter gives it back to the group.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from opentelemetry import trace

from bus import codec, logs
from bus.context import Context
from bus.dead_letter import type_name
from bus.errors import DecodeError
from bus.message import ATTEMPT, DEADLINE, Message
from bus.outcome import classify, settle_failure
from bus.service import Subscription
from bus.transport import Consumer, Delivery

if TYPE_CHECKING:
    from bus.bus import Bus

log = logging.getLogger("bus.dispatch")


class Runner:
    """The workers of one subscription."""

    def __init__(self, bus: Bus, sub: Subscription, consumer: Consumer) -> None:
        self._bus = bus
        self._sub = sub
        self._consumer = consumer
        self._stopping = False
        self._intakes: set[anyio.CancelScope] = set()
        self._workers: anyio.CancelScope | None = None
        self.done = anyio.Event()
        # Resolved once: the decoder per content type is cached in codec.decoder.
        self._handler = sub.handler
        self._payload_type = sub.payload_type
        self._telemetry = bus._telemetry

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._workers = tg.cancel_scope
                for _ in range(self._sub.concurrency):
                    tg.start_soon(self._worker)
        finally:
            self.done.set()

    def stop_intake(self) -> None:
        """Take no new message; handlers already running go on."""
        self._stopping = True
        for scope in self._intakes:
            scope.cancel()

    def abandon(self) -> None:
        """Cancel running handlers: their messages stay unsettled and are redelivered."""
        self.stop_intake()
        if self._workers is not None:
            self._workers.cancel()

    async def _worker(self) -> None:
        consumer = self._consumer
        poll = getattr(consumer, "poll", None)
        polled = failures = 0
        while not self._stopping:
            if poll is not None:
                ready: Delivery | None = poll()
                if ready is not None:
                    await self._settle_safely(ready)
                    polled += 1
                    if polled % 32 == 0:  # a busy queue must not starve the event loop
                        await anyio.lowlevel.checkpoint()
                    continue
            delivery = None
            with anyio.CancelScope() as intake:
                self._intakes.add(intake)
                try:
                    delivery = await consumer.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    # Adapters reconnect by themselves; one that gives up must not take the
                    # other subscriptions down with it. Try again after a pause.
                    failures += 1
                    log.error(
                        "consuming %s for group %s failed (%s: %s); retrying",
                        self._sub.topic, self._sub.group, type_name(exc), exc,
                        extra={"topic": self._sub.topic, "group": self._sub.group},
                    )  # fmt: skip
                    await anyio.sleep(min(5.0, 0.1 * 2**failures))
                finally:
                    self._intakes.discard(intake)
            if intake.cancel_called:
                return
            if delivery is not None:
                failures = 0
                await self._settle_safely(delivery)

    async def _settle_safely(self, delivery: Delivery) -> None:
        try:
            await self._handle(delivery)
        except Exception:  # a broker error while settling: the broker redelivers it
            log.exception(
                "could not settle message %s of %s",
                delivery.message.id,
                self._sub.topic,
                extra={"message_id": delivery.message.id, "topic": self._sub.topic},
            )

    async def _handle(self, delivery: Delivery) -> None:
        sub = self._sub
        message = delivery.message
        logs.current.set((message.id, message.correlation_id, sub.topic, sub.group))
        raw_attempt = message.headers.get(ATTEMPT)
        attempt = (int(raw_attempt) if raw_attempt else 1) + delivery.redeliveries
        if sub.reply and self._expired(message):
            await delivery.ack()
            return
        tel = self._telemetry
        if tel.tracing or tel.metering:
            await self._handle_observed(delivery, message, attempt)
            return
        try:
            payload = codec.decode(message.body, self._payload_type, message.content_type)
            if sub.wants_context:
                result = await self._handler(
                    payload, Context(self._bus, message, sub.topic, sub.group, attempt)
                )
            else:
                result = await self._handler(payload)
        except Exception as exc:
            await self._failed(delivery, exc, attempt)
            return
        if sub.reply:
            await self._bus._requests.reply(message, result)
        await delivery.ack()

    async def _handle_observed(self, delivery: Delivery, message: Message, attempt: int) -> None:
        """``_handle`` with a consumer span, counters and a duration histogram."""
        sub, tel = self._sub, self._telemetry
        started = time.perf_counter()
        attrs = {
            "messaging.destination.name": sub.topic,
            "messaging.consumer.group.name": sub.group,
        }
        tel.track_in_flight(1, attrs)
        try:
            with tel.process_span(sub.topic, sub.group, message) as span:
                span.set_attribute("messaging.delivery.attempt", attempt)
                try:
                    payload = codec.decode(message.body, self._payload_type, message.content_type)
                    if sub.wants_context:
                        ctx = Context(self._bus, message, sub.topic, sub.group, attempt)
                        result = await self._handler(payload, ctx)
                    else:
                        result = await self._handler(payload)
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(trace.StatusCode.ERROR, str(exc)[:256])
                    span.set_attribute("error.type", type_name(exc))
                    tel.count("failed", sub.topic, sub.group)
                    delay = await self._failed(delivery, exc, attempt)
                    if delay is not None:
                        span.add_event("bus.retry", {"bus.retry.delay_s": delay})
                        tel.count("retried", sub.topic, sub.group)
                    elif not sub.reply or isinstance(exc, DecodeError):
                        span.add_event("bus.dead_letter", {"bus.dlq.reason": classify(exc)})
                        tel.count("dead_lettered", sub.topic, sub.group)
                    return
                if sub.reply:
                    await self._bus._requests.reply(message, result)
                await delivery.ack()
                tel.count("handled", sub.topic, sub.group)
        finally:
            tel.track_in_flight(-1, attrs)
            tel.timed(sub.topic, sub.group, started)

    def _expired(self, message: Message) -> bool:
        """A request whose caller stopped waiting: answering it would only repeat its
        side effects for nobody."""
        deadline = message.headers.get(DEADLINE)
        if deadline is None:
            return False
        try:
            expired = time.time() > float(deadline)
        except ValueError:
            return False
        if expired:
            log.info(
                "skipped request %s on %s: its caller stopped waiting at %s",
                message.id, self._sub.topic, deadline,
                extra={"message_id": message.id, "topic": self._sub.topic},
            )  # fmt: skip
        return expired

    async def _failed(self, delivery: Delivery, exc: Exception, attempt: int) -> float | None:
        sub = self._sub
        if sub.reply:
            # The caller learns of it now; only poison input is also parked.
            await self._bus._requests.reply_error(delivery.message, exc)
            if not isinstance(exc, DecodeError):
                await delivery.ack()
                return None
        return await settle_failure(
            delivery, exc, topic=sub.topic, group=sub.group, attempt=attempt, retry=sub.retry
        )

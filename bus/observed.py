"""Telemetry around the handling path: a consumer span, counters, in-flight and duration.

A wrapper, not a second copy of the path: it sees only the delivery going in and the
``Outcome`` coming out. Used only when an OpenTelemetry SDK is installed.

A message whose trace the SDK does not sample (most of them, at a production sampling
ratio) gets no span and no duration record (see bus.telemetry): only its trace context
is made current around the handler and the counters move. For those, ``begin`` and
``handled``/``failed`` let the worker run the handler itself, as it does without an SDK
(bus/dispatch.py); everything else goes through ``__call__``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from contextvars import Token
from typing import Any

from opentelemetry import context, trace

from bus import telemetry
from bus.dead_letter import describe, type_name
from bus.handling import Handling, Outcome, attempt_of
from bus.outcome import classify
from bus.service import Subscription
from bus.telemetry import Telemetry
from bus.transport import Delivery

_UNSAMPLED = trace.INVALID_SPAN  # records nothing, as the span the SDK would not start
_attach, _detach = telemetry.attach, telemetry.detach

Begun = tuple[Awaitable[Any], Token[context.Context]]
"""The handler's awaitable and the token restoring the context its trace replaced."""


class Observed:
    """``Handling`` for one subscription with telemetry around it (see the module)."""

    def __init__(self, handling: Handling, sub: Subscription, tel: Telemetry) -> None:
        self._handling = handling
        self._tel = tel
        self._topic, self._group = sub.topic, sub.group
        self._attrs = {
            "messaging.destination.name": sub.topic,
            "messaging.consumer.group.name": sub.group,
        }
        metering = tel.metering
        self._running = tel.running(sub.topic, sub.group) if metering else None
        self._handled = tel.tally("handled", sub.topic, sub.group) if metering else None
        self._tracing = tel.tracing
        self._unsampled = tel.extract_unsampled

    # -- a message the SDK does not sample: the worker runs the handler ------------

    def begin(self, delivery: Delivery) -> Begun | None:
        """As ``Handling.begin``, for a message whose trace the SDK does not sample: its
        trace context is made current (until ``handled`` or ``failed``). None where
        ``__call__`` must run instead."""
        if not self._tracing:
            return None
        upstream = self._unsampled(delivery.headers_for(telemetry.TRACE_CONTEXT))
        if upstream is None:
            return None
        token = _attach(upstream)
        step = self._handling.begin(delivery)
        if step is None:
            _detach(token)
            return None
        if self._running is not None:
            self._running.value += 1
        return step, token

    async def handled(self, delivery: Delivery, token: Token[context.Context]) -> Outcome:
        return await self._settled(token, self._handling.handled(delivery))

    async def failed(
        self,
        delivery: Delivery,
        exc: Exception | asyncio.CancelledError,
        token: Token[context.Context],
    ) -> Outcome:
        return await self._settled(token, self._handling.failed(delivery, exc))

    async def _settled(
        self, token: Token[context.Context], settling: Coroutine[Any, Any, Outcome]
    ) -> Outcome:
        """The trace context restored, the handling settled and counted."""
        _detach(token)
        try:
            outcome = await settling
        finally:
            if self._running is not None:
                self._running.value -= 1
        self._count(outcome)
        return outcome

    def acked(self, token: Token[context.Context]) -> None:
        """The handler returned and the delivery was acked at once (``ack_nowait``)."""
        _detach(token)
        if self._running is not None:
            self._running.value -= 1
        if self._handled is not None:
            self._handled.value += 1

    def _count(self, outcome: Outcome) -> None:
        if outcome.kind == "handled" and outcome.exc is None:
            if self._handled is not None:
                self._handled.value += 1
        else:
            _record(_UNSAMPLED, self._tel, outcome, self._topic, self._group)

    # -- every other message ---------------------------------------------------------

    async def __call__(self, delivery: Delivery) -> Outcome:
        tel, topic, group = self._tel, self._topic, self._group
        running = self._running
        message = delivery.message
        tracing = self._tracing
        upstream = self._unsampled(message.headers) if tracing else None
        if upstream is not None:
            # A trace the SDK does not sample (reached here when the handling path must
            # run whole: a request, a new content type): no span, and no duration.
            token = _attach(upstream)
            if running is not None:
                running.value += 1
            try:
                outcome = await self._handling(delivery)
            finally:
                _detach(token)
                if running is not None:
                    running.value -= 1
            self._count(outcome)
            return outcome
        started = time.perf_counter()
        if running is not None:
            running.value += 1
        # The handler runs inside the span: what it publishes carries it as parent.
        scope = None
        if tracing:
            attempt = attempt_of(message.headers, delivery.redeliveries)
            scope = tel.process_scope(topic, group, message, attempt)
        span = scope.span if scope is not None else None
        sampled = span is not None and span.is_recording()
        failed: BaseException | None = None
        try:
            outcome = await self._handling(delivery)
            _record(span or _UNSAMPLED, tel, outcome, topic, group)
            return outcome
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if scope is not None:
                scope.close(failed)
            if running is not None:
                running.value -= 1
                if sampled or not tracing:
                    tel.timed(self._attrs, started)


def _record(span: trace.Span, tel: Telemetry, outcome: Outcome, topic: str, group: str) -> None:
    exc = outcome.exc
    if exc is not None:
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, describe(exc)[:256])
        span.set_attribute("error.type", type_name(exc))
        tel.count("failed", topic, group)
    kind = outcome.kind
    if kind == "handled":
        tel.count("handled", topic, group)
    elif kind == "retried":
        span.add_event("bus.retry", {"bus.retry.delay_s": outcome.delay or 0.0})
        tel.count("retried", topic, group)
    elif kind == "dead_lettered":
        reason = classify(exc) if exc is not None else "failed"
        span.add_event("bus.dead_letter", {"bus.dlq.reason": reason})
        tel.count("dead_lettered", topic, group)
    elif kind == "given_back":
        span.add_event("bus.given_back")

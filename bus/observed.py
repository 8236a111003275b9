"""Telemetry around the handling path: a consumer span, counters, in-flight and duration.

A wrapper, not a second copy of the path: it sees only the delivery going in and the
``Outcome`` coming out. Used only when an OpenTelemetry SDK is installed.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from bus import telemetry
from bus.dead_letter import describe, type_name
from bus.handling import Handle, Outcome, attempt_of
from bus.outcome import classify
from bus.service import Subscription
from bus.telemetry import Telemetry
from bus.transport import Delivery

_UNSAMPLED = trace.INVALID_SPAN  # records nothing, as the span the SDK would not start


def observed(handle: Handle, sub: Subscription, tel: Telemetry) -> Handle:
    """``handle`` with telemetry for ``sub`` around it."""
    topic, group = sub.topic, sub.group
    attrs = {"messaging.destination.name": topic, "messaging.consumer.group.name": group}
    metering = tel.metering
    running = tel.running(topic, group) if metering else None
    handled = tel.tally("handled", topic, group) if metering else None
    tracing = tel.tracing
    unsampled = tel.extract_unsampled
    attach, detach = telemetry.attach, telemetry.detach
    perf_counter = time.perf_counter

    async def handle_observed(delivery: Delivery) -> Outcome:
        message = delivery.message
        upstream = unsampled(message.headers) if tracing else None
        if upstream is not None:
            # A trace the SDK does not sample: no span, and no duration recorded (see the
            # module); its context is current, so what the handler publishes carries the
            # same trace and decision on.
            token = attach(upstream)
            if running is not None:
                running.value += 1
            try:
                outcome = await handle(delivery)
            finally:
                detach(token)
                if running is not None:
                    running.value -= 1
            if outcome.kind == "handled" and outcome.exc is None:
                if handled is not None:
                    handled.value += 1
            else:
                _record(_UNSAMPLED, tel, outcome, topic, group)
            return outcome
        started = perf_counter()
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
            outcome = await handle(delivery)
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
                    tel.timed(attrs, started)

    return handle_observed


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

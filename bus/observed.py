"""Telemetry around the handling path: a consumer span, counters, in-flight and duration.

A wrapper, not a second copy of the path: it sees only the delivery going in and the
``Outcome`` coming out. Used only when an OpenTelemetry SDK is installed.
"""

from __future__ import annotations

import time

from opentelemetry import trace

from bus.dead_letter import describe, type_name
from bus.handling import Handle, Outcome, attempt_of
from bus.outcome import classify
from bus.service import Subscription
from bus.telemetry import Telemetry
from bus.transport import Delivery


def observed(handle: Handle, sub: Subscription, tel: Telemetry) -> Handle:
    """``handle`` with telemetry for ``sub`` around it."""
    topic, group = sub.topic, sub.group
    attrs = {"messaging.destination.name": topic, "messaging.consumer.group.name": group}
    metering = tel.metering
    running = tel.running(topic, group) if metering else None

    async def handle_observed(delivery: Delivery) -> Outcome:
        started = time.perf_counter()
        if running is not None:
            running.value += 1
        try:
            # The handler runs inside the span: what it publishes carries it as parent.
            message = delivery.message
            with tel.process_span(topic, group, message) as span:
                if span.is_recording():
                    attempt = attempt_of(message.headers, delivery.redeliveries)
                    span.set_attribute("messaging.delivery.attempt", attempt)
                outcome = await handle(delivery)
                _record(span, tel, outcome, topic, group)
                return outcome
        finally:
            if running is not None:
                running.value -= 1
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

"""Tracing and metrics through the OpenTelemetry API, named by its messaging conventions.

Whether an SDK is installed is looked up once, when a Bus starts; with none, every hook
here is a plain attribute check on the hot path and costs ~nothing.

With an SDK, each count also lands in ``tallies``, this process's running totals per
(instrument, topic, group), which presence announces for the console's flow charts (the
metrics API cannot be read back). The tally replaces the attribute dict a count built
each time, so it adds nothing per message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import NoOpMeterProvider

from bus.message import Message

_NAME = "bus"

# Bounded like bus.names' cache: past it, new (instrument, topic, group) keys are counted
# through OpenTelemetry only, not tallied.
_TALLIES_MAX = 10_000


class Tally:
    """One running total and the metric attributes it is counted under."""

    __slots__ = ("attrs", "value")

    def __init__(self, attrs: dict[str, str]) -> None:
        self.attrs = attrs
        self.value = 0


tallies: dict[tuple[str, str, str | None], Tally] = {}
"""This process's counts by (instrument, topic, group), while an SDK is installed."""


def _attrs(topic: str, group: str | None) -> dict[str, str]:
    attrs = {"messaging.destination.name": topic}
    if group is not None:
        attrs["messaging.consumer.group.name"] = group
    return attrs


def _tracing_installed() -> bool:
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _metrics_installed() -> bool:
    provider = metrics.get_meter_provider()
    return type(provider).__name__ != "_ProxyMeterProvider" and not isinstance(
        provider, NoOpMeterProvider
    )


class Telemetry:
    """Spans and instruments for one Bus on one messaging system."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.tracing = _tracing_installed()
        self.metering = _metrics_installed()
        self._tracer = trace.get_tracer(_NAME)
        if self.metering:
            meter = metrics.get_meter(_NAME)
            self.published = meter.create_counter("bus.messages.published", "{message}")
            self.handled = meter.create_counter("bus.messages.handled", "{message}")
            self.failed = meter.create_counter("bus.messages.failed", "{message}")
            self.retried = meter.create_counter("bus.messages.retried", "{message}")
            self.dead_lettered = meter.create_counter("bus.messages.dead_lettered", "{message}")
            self.in_flight = meter.create_up_down_counter("bus.handlers.in_flight", "{handler}")
            self.duration = meter.create_histogram("bus.process.duration", "s")

    def inject(self, headers: dict[str, str]) -> None:
        """Write the current trace context into ``headers`` (W3C traceparent)."""
        propagate.inject(headers)

    @contextmanager
    def publish_span(
        self, topic: str, message_id: str, correlation_id: str | None
    ) -> Iterator[None]:
        attrs: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": topic,
            "messaging.message.id": message_id,
        }
        if correlation_id:
            attrs["messaging.message.conversation_id"] = correlation_id
        with self._tracer.start_as_current_span(
            f"publish {topic}", kind=trace.SpanKind.PRODUCER, attributes=attrs
        ):
            yield

    @contextmanager
    def request_span(self, topic: str) -> Iterator[None]:
        attrs = {
            "messaging.system": self.system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "request",
            "messaging.destination.name": topic,
        }
        with self._tracer.start_as_current_span(
            f"request {topic}", kind=trace.SpanKind.CLIENT, attributes=attrs
        ):
            yield

    @contextmanager
    def process_span(self, topic: str, group: str, message: Message) -> Iterator[trace.Span]:
        parent = propagate.extract(message.headers)
        attrs: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.message.id": message.id,
        }
        if message.correlation_id:
            attrs["messaging.message.conversation_id"] = message.correlation_id
        with self._tracer.start_as_current_span(
            f"process {topic}", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attrs
        ) as span:
            yield span

    def count(self, instrument: str, topic: str, group: str | None = None) -> None:
        if self.metering:
            key = (instrument, topic, group)
            tally = tallies.get(key)
            if tally is None:
                if len(tallies) >= _TALLIES_MAX:
                    getattr(self, instrument).add(1, _attrs(topic, group))
                    return
                tally = tallies[key] = Tally(_attrs(topic, group))
            tally.value += 1
            getattr(self, instrument).add(1, tally.attrs)

    def timed(self, topic: str, group: str, started: float) -> None:
        if self.metering:
            self.duration.record(
                time.perf_counter() - started,
                {"messaging.destination.name": topic, "messaging.consumer.group.name": group},
            )

    def track_in_flight(self, delta: int, attrs: Mapping[str, str]) -> None:
        if self.metering:
            self.in_flight.add(delta, dict(attrs))

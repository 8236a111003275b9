"""Tracing and metrics through the OpenTelemetry API, named by its messaging conventions.

Whether an SDK is installed is looked up once, when a Bus starts; with none, every hook
here is a plain attribute check on the hot path and costs ~nothing.

With an SDK, the counters cost an integer increment a message: each count lands in
``tallies``, this process's running totals per (instrument, topic, group), which the
SDK reads through observable counters when it collects (and presence announces for the
console's flow charts). Handlers in flight are kept the same way. Only the duration
histogram calls the SDK per message, with attributes built once per subscription. A
process span is started with the attributes a sampler may look at; the per-message ones
are added only to spans that record, so an unsampled message pays for little beyond
reading its trace context.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation

from bus.message import Message

_NAME = "bus"

# Bounded like bus.names' cache: past it, counts of new (instrument, topic, group) keys
# go to one overflow series per instrument, as the SDK's own cardinality limit does.
_TALLIES_MAX = 10_000
_OVERFLOW = {"otel.metric.overflow": "true"}
COUNTERS = ("published", "handled", "failed", "retried", "dead_lettered")


class Tally:
    """One running total and the metric attributes it is reported under."""

    __slots__ = ("attrs", "value")

    def __init__(self, attrs: dict[str, str]) -> None:
        self.attrs = attrs
        self.value = 0


tallies: dict[tuple[str, str, str | None], Tally] = {}
"""This process's counts by (instrument, topic, group), while an SDK is installed."""

in_flight: dict[tuple[str, str], Tally] = {}
"""Handlers running now, by (topic, group), while an SDK is installed."""

_observing: list[object] = []  # the meter provider the observable instruments were made on


def _attrs(topic: str, group: str | None) -> dict[str, str]:
    attrs = {"messaging.destination.name": topic}
    if group is not None:
        attrs["messaging.consumer.group.name"] = group
    return attrs


def _report(totals: dict[Any, Tally], instrument: str | None = None) -> Any:
    def callback(_: CallbackOptions) -> list[Observation]:
        return [
            Observation(t.value, t.attrs)
            for key, t in list(totals.items())
            if instrument is None or key[0] == instrument
        ]

    return callback


def _observe() -> None:
    """The observable instruments, made once per meter provider (a provider keeps every
    instrument made on it, so a second set would report everything twice)."""
    provider = metrics.get_meter_provider()
    if _observing and _observing[0] is provider:
        return
    _observing[:] = [provider]
    meter = metrics.get_meter(_NAME)
    for name in COUNTERS:
        meter.create_observable_counter(
            f"bus.messages.{name}", [_report(tallies, name)], "{message}"
        )
    meter.create_observable_up_down_counter(
        "bus.handlers.in_flight", [_report(in_flight)], "{handler}"
    )


def _tracing_installed() -> bool:
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _drops_unsampled_remote_children() -> bool:
    """The installed SDK records no span whose remote parent is unsampled: its sampler is
    ParentBased (the SDK's default) with that case left at ALWAYS_OFF. Then a message
    whose trace context says "not sampled" needs no span of its own, only that context
    made current, so what its handler publishes carries the same decision on."""
    sampler = getattr(trace.get_tracer_provider(), "sampler", None)
    try:
        from opentelemetry.sdk.trace import sampling
    except ImportError:  # an API-only install, or another SDK: start spans as usual
        return False
    return isinstance(sampler, sampling.ParentBased) and (
        getattr(sampler, "_remote_parent_not_sampled", None) is sampling.ALWAYS_OFF
    )


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
        self._process_cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._skip_unsampled = self.tracing and _drops_unsampled_remote_children()
        if self.metering:
            _observe()
            self.duration = metrics.get_meter(_NAME).create_histogram("bus.process.duration", "s")

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
        }
        with self._tracer.start_as_current_span(
            f"publish {topic}", kind=trace.SpanKind.PRODUCER, attributes=attrs
        ) as span:
            if span.is_recording():
                span.set_attribute("messaging.message.id", message_id)
                if correlation_id:
                    span.set_attribute("messaging.message.conversation_id", correlation_id)
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
        if self._skip_unsampled:
            upstream = trace.get_current_span(parent)
            known = upstream.get_span_context()
            if known.is_remote and known.is_valid and not known.trace_flags.sampled:
                token = context.attach(parent)
                try:
                    yield upstream  # records nothing, as the span the SDK would start
                finally:
                    context.detach(token)
                return
        with self._tracer.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=self._process_attrs(topic, group),
        ) as span:
            if span.is_recording():
                span.set_attribute("messaging.message.id", message.id)
                if message.correlation_id:
                    span.set_attribute("messaging.message.conversation_id", message.correlation_id)
            yield span

    def _process_attrs(self, topic: str, group: str) -> dict[str, Any]:
        """The attributes a process span starts with, built once per subscription (the
        SDK copies them)."""
        key = (topic, group)
        attrs = self._process_cache.get(key)
        if attrs is None:
            attrs = self._process_cache[key] = {
                "messaging.system": self.system,
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
            }
        return attrs

    def count(self, instrument: str, topic: str, group: str | None = None) -> None:
        if self.metering:
            key = (instrument, topic, group)
            tally = tallies.get(key)
            if tally is None:
                if len(tallies) >= _TALLIES_MAX:
                    key = (instrument, "", None)
                    tally = tallies.get(key)
                if tally is None:
                    attrs = _attrs(topic, group) if key[1] else dict(_OVERFLOW)
                    tally = tallies[key] = Tally(attrs)
            tally.value += 1

    def running(self, topic: str, group: str) -> Tally:
        """The in-flight tally of one subscription: its handler adds 1 and takes 1 away
        around each message (reported by an observable up-down counter)."""
        key = (topic, group)
        tally = in_flight.get(key)
        if tally is None:
            tally = in_flight[key] = Tally(_attrs(topic, group))
        return tally

    def timed(self, attrs: Mapping[str, str], started: float) -> None:
        if self.metering:
            self.duration.record(time.perf_counter() - started, attrs)

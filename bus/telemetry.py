"""Tracing and metrics through the OpenTelemetry API, named by its messaging conventions.

Whether an SDK is installed is looked up once, when a Bus starts; with none, every hook
here is a plain attribute check on the hot path and costs ~nothing.

With an SDK, the counters cost an integer increment a message: each count lands in
``tallies``, this process's running totals per (instrument, topic, group), which the
SDK reads through observable counters when it collects (and presence announces for the
console's flow charts). Handlers in flight are kept the same way. The duration
histogram (``bus.process.duration``) is recorded for the handlings whose trace is sampled
(every one without a tracing SDK, or with its default ALWAYS_ON): one SDK call costs more
than the rest of a handling, and sampling does not depend on duration, so its percentiles
hold for all messages. Its count does not: count with ``bus.messages.handled``/``failed``.

Spans cost the SDK's price only for messages whose trace is sampled. When the installed
SDK samples as its default does (``ParentBased``: a child follows its parent's decision;
a root is decided by ``TraceIdRatioBased``, ``ALWAYS_ON`` or ``ALWAYS_OFF``) and
propagates W3C trace context (the default propagators), the bus takes that decision
itself for the messages the SDK would drop, as the SDK would take it, and starts no span
for them: a publish with no trace around it draws a trace id from the SDK's id generator
and, if the root sampler leaves it out, carries a ``traceparent`` made of that id with
the "not sampled" flag; a publish or a handling inside an unsampled trace carries that
trace's context on. A sampled root is started by the SDK with the very trace id that was
drawn, so its sampler decides the same. Any other sampler or propagator: every span goes
through the SDK as usual.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from opentelemetry import baggage, context, metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation

from bus.message import TRACEPARENT, Message

_NAME = "bus"

# Bounded like bus.names' cache: past it, counts of new (instrument, topic, group) keys
# go to one overflow series per instrument, as the SDK's own cardinality limit does.
_TALLIES_MAX = 10_000
_OVERFLOW = {"otel.metric.overflow": "true"}
COUNTERS = ("published", "handled", "failed", "retried", "dead_lettered")

_TRACESTATE = "tracestate"
_BAGGAGE = "baggage"
TRACE_CONTEXT = frozenset({TRACEPARENT, _TRACESTATE, _BAGGAGE})
"""The headers ``extract_unsampled`` reads (``Delivery.headers_for``)."""
# A version-00 traceparent and nothing else (the W3C propagator accepts no more for 00).
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16  # invalid ids, as the W3C propagator reads them
_SAMPLED_LAST = frozenset("13579bdf")  # the last hex digit of flags with "sampled" set
_TRACE_ID_LOW = (1 << 64) - 1  # TraceIdRatioBased decides on a trace id's low 64 bits
_EMPTY = context.Context()
# The key the API keeps the current span under (as trace.set_span_in_context sets it).
[_SPAN_KEY] = trace.set_span_in_context(trace.INVALID_SPAN, _EMPTY)

try:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
except ImportError:  # an API-only install

    class RandomIdGenerator:  # type: ignore[no-redef]
        """Stands for the SDK's, which is not installed."""


_carried: ContextVar[str | None] = ContextVar("bus.telemetry.carried", default=None)
"""The traceparent of a publish the bus started no span for, while that publish runs:
what ``Telemetry.inject`` writes into its headers."""


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


def _metrics_installed() -> bool:
    provider = metrics.get_meter_provider()
    return type(provider).__name__ != "_ProxyMeterProvider" and not isinstance(
        provider, NoOpMeterProvider
    )


def _runtime_var() -> ContextVar[context.Context] | None:
    """The ContextVar the API's default runtime context keeps the current context in:
    read and set directly, as ``context.get_current``/``attach``/``detach`` do through
    two calls each. None with another runtime context."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    if type(runtime).__name__ != "ContextVarsRuntimeContext":
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_RUNTIME = _runtime_var()
current: Callable[[], context.Context] = context.get_current if _RUNTIME is None else _RUNTIME.get
"""The current OpenTelemetry context (``context.get_current``)."""
attach: Callable[[context.Context], Token[context.Context]] = (
    context.attach if _RUNTIME is None else _RUNTIME.set
)
"""Make a context current (``context.attach``)."""
detach: Callable[[Token[context.Context]], None] = (
    context.detach if _RUNTIME is None else _RUNTIME.reset
)
"""Restore the context before ``attach`` (``context.detach``)."""


def _plain(raw: str | None, headers: Mapping[str, str]) -> bool:
    """``raw`` (the message's traceparent) is a plain version-00 one with valid ids, and
    the message's only trace context (no tracestate, no baggage): else the general
    propagator reads it."""
    return not (
        raw is None
        or _TRACESTATE in headers
        or _BAGGAGE in headers
        or _TRACEPARENT_00.fullmatch(raw) is None
        or raw[3:35] == _ZERO_TRACE
        or raw[36:52] == _ZERO_SPAN
    )


def _ids(raw: str) -> tuple[int, int, int]:
    """(trace id, span id, flags) of a traceparent ``_plain`` accepted."""
    return int(raw[3:35], 16), int(raw[36:52], 16), int(raw[53:], 16)


def _parse(headers: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a plain traceparent (``_plain``), else None."""
    raw = headers.get(TRACEPARENT)
    return _ids(raw) if raw is not None and _plain(raw, headers) else None


_NO_STATE = trace.TraceState()  # immutable: one for every remote span without one
_FLAGS = [trace.TraceFlags(flags) for flags in range(256)]


def _span_context_maker() -> Callable[[int, int, int], trace.SpanContext]:
    """SpanContext(trace id, span id, remote, flags, no state) for ids ``_parse``
    checked: built as the API's own constructor builds it, without re-checking them,
    where that gives the same (it is checked here, once); else by the constructor."""

    def checked(trace_id: int, span_id: int, flags: int) -> trace.SpanContext:
        return trace.SpanContext(trace_id, span_id, True, _FLAGS[flags], _NO_STATE)

    def direct(trace_id: int, span_id: int, flags: int) -> trace.SpanContext:
        return _new_tuple(
            trace.SpanContext, (trace_id, span_id, True, _FLAGS[flags], _NO_STATE, True)
        )

    try:
        same = direct(3, 5, 2) == checked(3, 5, 2) and direct(3, 5, 2).is_valid
    except Exception:
        same = False
    return direct if same else checked


_new_tuple = tuple.__new__
_span_context = _span_context_maker()


class _Remote(trace.NonRecordingSpan):
    """The remote parent of a message whose trace the SDK does not sample, read from its
    traceparent only when asked (most handlings never ask): as the W3C propagator's
    ``NonRecordingSpan`` of the same ids, flags and no trace state. The traceparent
    was checked before (``extract_unsampled``)."""

    def __init__(self, raw: str) -> None:  # no super().__init__: its context is lazy
        self.raw = raw
        self._context: trace.SpanContext | None = None  # type: ignore[assignment]

    def get_span_context(self) -> trace.SpanContext:
        known = self._context
        if known is None:
            known = self._context = _span_context(*_ids(self.raw))
        return known


def _remote(trace_id: int, span_id: int, flags: int) -> context.Context:
    """A context whose current span is the remote one a traceparent names (what the W3C
    propagator extracts)."""
    return context.Context(
        {_SPAN_KEY: trace.NonRecordingSpan(_span_context(trace_id, span_id, flags))}
    )


class _Chosen:
    """An id generator handing out, once, the trace id the bus drew and decided on (so
    the SDK's sampler sees the id the bus's decision was made on); the installed
    generator's otherwise."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.next = 0

    def generate_trace_id(self) -> int:
        trace_id, self.next = self.next, 0
        return trace_id or int(self.real.generate_trace_id())

    def generate_span_id(self) -> int:
        return int(self.real.generate_span_id())

    def is_trace_id_random(self) -> bool:
        return bool(getattr(self.real, "is_trace_id_random", lambda: False)())


class _Sampling:
    """What the bus knows of the installed SDK's sampling, enough to leave out the spans
    it would drop (see the module); ``look`` returns None when it knows too little."""

    def __init__(self, tracer: Any, bound: int | None, random_ids: bool) -> None:
        self.bound = bound  # roots whose trace id's low 64 bits are below it are sampled
        self.ids = tracer.id_generator
        # The SDK's default generator is random.getrandbits: drawn here without its calls.
        self.bits = random.getrandbits if type(self.ids) is RandomIdGenerator else None
        self.chosen = _Chosen(self.ids)
        self.tracer = copy.copy(tracer)  # the SDK's tracer, drawing its root ids from us
        self.tracer.id_generator = self.chosen
        self.root_flags = "02" if random_ids else "00"  # the SDK marks random trace ids

    @staticmethod
    def look(tracer: Any) -> _Sampling | None:
        try:
            from opentelemetry.baggage.propagation import W3CBaggagePropagator
            from opentelemetry.propagators.composite import CompositePropagator
            from opentelemetry.sdk.trace import Tracer, sampling
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:  # an API-only install, or another SDK: spans as usual
            return None
        if type(tracer) is not Tracer or not hasattr(tracer, "id_generator"):
            return None
        textmap = propagate.get_global_textmap()
        kinds = [type(p) for p in getattr(textmap, "_propagators", [textmap])]
        if type(textmap) not in (CompositePropagator, TraceContextTextMapPropagator) or (
            kinds not in ([TraceContextTextMapPropagator],
                          [TraceContextTextMapPropagator, W3CBaggagePropagator])
        ):  # fmt: skip
            return None
        sampler = tracer.sampler
        if type(sampler) is not sampling.ParentBased or not (
            getattr(sampler, "_remote_parent_sampled", None) is sampling.ALWAYS_ON
            and getattr(sampler, "_local_parent_sampled", None) is sampling.ALWAYS_ON
            and getattr(sampler, "_remote_parent_not_sampled", None) is sampling.ALWAYS_OFF
            and getattr(sampler, "_local_parent_not_sampled", None) is sampling.ALWAYS_OFF
        ):
            return None
        root = getattr(sampler, "_root", None)
        bound: int | None = None  # another root sampler: roots go through the SDK
        if type(root) is sampling.TraceIdRatioBased:
            bound = root.bound
        elif root is sampling.ALWAYS_ON:
            bound = _TRACE_ID_LOW + 1
        elif root is sampling.ALWAYS_OFF:
            bound = 0
        random_ids = bool(getattr(tracer.id_generator, "is_trace_id_random", lambda: False)())
        return _Sampling(tracer, bound, random_ids)


class Telemetry:
    """Spans and instruments for one Bus on one messaging system."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.tracing = _tracing_installed()
        self.metering = _metrics_installed()
        self._tracer = trace.get_tracer(_NAME)
        self._sampling = _Sampling.look(self._tracer) if self.tracing else None
        self._send_attrs: dict[tuple[str, str], dict[str, Any]] = {}
        self._process_attrs: dict[tuple[str, str], dict[str, Any]] = {}
        if self.metering:
            _observe()
            self.duration = metrics.get_meter(_NAME).create_histogram("bus.process.duration", "s")

    # -- sending -------------------------------------------------------------------

    def inject(self, headers: dict[str, str]) -> None:
        """Write the current trace context into ``headers`` (W3C traceparent)."""
        carried = _carried.get()
        now = current()
        if carried is None:
            if now or self._sampling is None:  # an empty context has nothing to carry
                propagate.inject(headers, now)
            return
        if now and baggage.get_all(now):  # carried along with the trace context
            propagate.inject(headers, now)
        headers[TRACEPARENT] = carried

    def carry(self, headers: dict[str, str], carried: str) -> None:
        """Write the trace context of a send left unsampled (``carried``, from
        ``unsampled``) into ``headers``, with the current baggage if there is any."""
        now = current()
        if now and baggage.get_all(now):
            propagate.inject(headers, now)
        headers[TRACEPARENT] = carried

    def unsampled(self) -> str | None:
        """The traceparent a producer or client span started now carries if the SDK
        would not sample it: then no span is started. None if it may; then its span is
        started with ``publish_span(..., decided=True)`` (a root's trace id is the one
        this decision was taken on)."""
        sampling = self._sampling
        if sampling is None:
            return None
        outer = _carried.get()
        if outer is not None:  # inside a send left unsampled: the same trace, unsampled
            return outer
        now = current()
        bits = sampling.bits
        if now:
            span = now.get(_SPAN_KEY)
            if type(span) is _Remote:  # an unsampled upstream (extract_unsampled)
                raw = span.raw
                span_id = (bits(64) or 1) if bits is not None else sampling.ids.generate_span_id()
                return f"00-{raw[3:35]}-{span_id:016x}-{raw[53:]}"
            parent = trace.get_current_span(now).get_span_context()
            if parent.is_valid:
                if parent.trace_flags & 1 or parent.trace_state:
                    return None
                span_id = (bits(64) or 1) if bits is not None else sampling.ids.generate_span_id()
                return f"00-{parent.trace_id:032x}-{span_id:016x}-{parent.trace_flags:02x}"
        bound = sampling.bound  # a root: decided on a trace id drawn here
        if bound is None:
            return None
        if bits is not None:
            ids = bits(192)  # the trace id and a span id at once
            trace_id, span_id = ids >> 64, ids & _TRACE_ID_LOW
            if not (trace_id and span_id):  # never 0, as the SDK draws them
                trace_id, span_id = trace_id or 1, span_id or 1
                ids = trace_id << 64 | span_id
        else:
            trace_id = sampling.ids.generate_trace_id()
            ids = trace_id << 64 | sampling.ids.generate_span_id()
        if trace_id & _TRACE_ID_LOW < bound:
            sampling.chosen.next = trace_id  # the SDK starts this root with this id
            return None
        both = ids.to_bytes(24, "big").hex()  # faster than formatting the two ints
        return f"00-{both[:32]}-{both[32:]}-{sampling.root_flags}"

    def publish_span(
        self, topic: str, message_id: str, correlation_id: str | None, decided: bool = False
    ) -> Scope:
        """The producer span of one publish, current while its headers are made (they
        carry it as the handler's parent) and while the broker takes the message.
        ``decided``: ``unsampled()`` was asked just before and said None."""
        return Scope(
            self, topic, "publish", trace.SpanKind.PRODUCER, message_id, correlation_id, decided
        )

    def request_span(self, topic: str) -> Scope:
        return Scope(self, topic, "request", trace.SpanKind.CLIENT, None, None, False)

    def send_attrs(self, topic: str, operation: str) -> dict[str, Any]:
        """The attributes of a producer or client span, but the message's own: built once
        per topic."""
        key = (topic, operation)
        attrs = self._send_attrs.get(key)
        if attrs is None:
            if len(self._send_attrs) >= _TALLIES_MAX:
                self._send_attrs.clear()
            attrs = self._send_attrs[key] = {
                "messaging.system": self.system,
                "messaging.operation.type": "send",
                "messaging.operation.name": operation,
                "messaging.destination.name": topic,
            }
        return attrs

    def start(
        self,
        name: str,
        kind: trace.SpanKind,
        attrs: dict[str, Any],
        parent: context.Context | None = None,
    ) -> trace.Span:
        """A span started by the SDK (with the trace id ``unsampled`` drew for a root)."""
        sampling = self._sampling
        if sampling is not None and sampling.chosen.next:
            try:
                span: trace.Span = sampling.tracer.start_span(
                    name, context=parent, kind=kind, attributes=attrs
                )
                return span
            finally:
                sampling.chosen.next = 0
        return self._tracer.start_span(name, context=parent, kind=kind, attributes=attrs)

    # -- handling ------------------------------------------------------------------

    def extract_unsampled(self, headers: Mapping[str, str]) -> context.Context | None:
        """The context of a message whose trace the SDK does not sample, read without the
        general propagator; None when the message takes the general path (sampled, no or
        a foreign trace context, trace state, baggage), or the sampler is not known."""
        if self._sampling is None:
            return None
        raw = headers.get(TRACEPARENT)
        if raw is None or raw[-1:] in _SAMPLED_LAST or not _plain(raw, headers):
            return None  # sampled, or not a plain traceparent: the general path
        return context.Context({_SPAN_KEY: _Remote(raw)})

    def process_scope(self, topic: str, group: str, message: Message, attempt: int) -> ProcessScope:
        return ProcessScope(self, topic, group, message, attempt)

    def process_attrs(self, topic: str, group: str) -> dict[str, Any]:
        """The attributes of a process span, but the message's own: built once per
        subscription."""
        key = (topic, group)
        attrs = self._process_attrs.get(key)
        if attrs is None:
            attrs = self._process_attrs[key] = {
                "messaging.system": self.system,
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
            }
        return attrs

    # -- metrics -------------------------------------------------------------------

    def count(self, instrument: str, topic: str, group: str | None = None) -> None:
        if self.metering:
            tally = tallies.get((instrument, topic, group))
            if tally is None:
                tally = self.tally(instrument, topic, group)
            tally.value += 1

    def tally(self, instrument: str, topic: str, group: str | None = None) -> Tally:
        """The running total of ``instrument`` for (topic, group)."""
        key = (instrument, topic, group)
        tally = tallies.get(key)
        if tally is None:
            if len(tallies) >= _TALLIES_MAX:
                key = (instrument, "", None)
                tally = tallies.get(key)
            if tally is None:
                attrs = _attrs(topic, group) if key[1] else dict(_OVERFLOW)
                tally = tallies[key] = Tally(attrs)
        return tally

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


def _failed(span: trace.Span, exc: BaseException | None) -> None:
    """What ``trace.use_span`` records of an exception leaving a span."""
    if isinstance(exc, Exception) and span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


class Scope:
    """A producer or client span around a publish or a request (a context manager).
    For a message the SDK would not sample it starts no span: it only carries the trace
    context on, through ``Telemetry.inject``."""

    __slots__ = ("_carry", "_correlation", "_decided", "_id", "_kind", "_op", "_span", "_tel",
                 "_token", "_topic")  # fmt: skip

    def __init__(
        self,
        tel: Telemetry,
        topic: str,
        operation: str,
        kind: trace.SpanKind,
        message_id: str | None,
        correlation_id: str | None,
        decided: bool,
    ) -> None:
        self._tel = tel
        self._topic = topic
        self._op = operation
        self._kind = kind
        self._id = message_id
        self._correlation = correlation_id
        self._decided = decided
        self._span: trace.Span | None = None
        self._token: Token[context.Context] | None = None
        self._carry: Token[str | None] | None = None

    def __enter__(self) -> None:
        tel = self._tel
        carried = None if self._decided else tel.unsampled()
        if carried is not None:
            self._carry = _carried.set(carried)
            return
        topic, operation = self._topic, self._op
        attrs = tel.send_attrs(topic, operation)
        if self._id is not None or self._correlation:
            attrs = dict(attrs)
            if self._id is not None:
                attrs["messaging.message.id"] = self._id
            if self._correlation:
                attrs["messaging.message.conversation_id"] = self._correlation
        span = tel.start(f"{operation} {topic}", self._kind, attrs)
        self._span = span
        self._token = attach(trace.set_span_in_context(span, current()))
        known = span.get_span_context()
        if tel._sampling is not None and known.is_valid and not known.trace_state:
            self._carry = _carried.set(
                f"00-{known.trace_id:032x}-{known.span_id:016x}-{known.trace_flags:02x}"
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._carry is not None:
            _carried.reset(self._carry)
        span = self._span
        if span is not None:
            if self._token is not None:
                detach(self._token)
            _failed(span, exc)
            span.end()


class ProcessScope:
    """The consumer span of one handling, current while the handler runs (what it
    publishes carries it as parent). A message whose trace the SDK would not sample gets
    no span of its own: its upstream context is made current, so what the handler
    publishes carries the same trace and decision on."""

    __slots__ = ("_token", "span")

    def __init__(
        self,
        tel: Telemetry,
        topic: str,
        group: str,
        message: Message,
        attempt: int,
    ) -> None:
        headers = message.headers
        ids = _parse(headers) if tel._sampling is not None else None
        parent = _remote(*ids) if ids is not None else propagate.extract(headers)
        known = trace.get_current_span(parent).get_span_context()
        if tel._sampling is not None and (
            (known.is_valid and not known.trace_flags.sampled)
            or (not known.is_valid and tel.unsampled() is not None)  # a root left out
        ):
            self.span: trace.Span | None = None
            self._token = attach(parent)
            return
        attrs = dict(tel.process_attrs(topic, group))
        attrs["messaging.message.id"] = message.id
        if message.correlation_id:
            attrs["messaging.message.conversation_id"] = message.correlation_id
        attrs["messaging.delivery.attempt"] = attempt
        span = tel.start(f"process {topic}", trace.SpanKind.CONSUMER, attrs, parent)
        self.span = span
        self._token = attach(trace.set_span_in_context(span, parent))

    def close(self, exc: BaseException | None = None) -> None:
        detach(self._token)
        span = self.span
        if span is not None:
            _failed(span, exc)
            span.end()

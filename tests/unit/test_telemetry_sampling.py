"""The bus's own sampling decisions (bus/telemetry.py) agree with the SDK's: a span the
installed ParentBased sampler would drop is not started, its trace context is carried on;
a root the bus lets through is started by the SDK with the very trace id it decided on.
Each test gives the bus a tracer provider of its own (the global one is left alone)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bus.message import Message
from bus.telemetry import Telemetry

LOW = (1 << 64) - 1
PLAIN = "00-0000000000000000000000000000000a-000000000000000b-00"  # unsampled, plain


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def telemetry(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter, sampler: Sampler
) -> Telemetry:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(trace, "get_tracer", lambda name, *a, **k: provider.get_tracer(name))
    return Telemetry("memory")


def publish(tel: Telemetry) -> dict[str, str]:
    """The headers one publish carries, as Bus.publish makes them."""
    headers: dict[str, str] = {}
    carried = tel.unsampled()
    if carried is None:
        with tel.publish_span("t", "id-1", None, decided=True):
            tel.inject(headers)
    else:
        tel.inject(headers)
        headers["traceparent"] = carried
    return headers


def ids(traceparent: str) -> tuple[int, int, int]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def test_a_root_is_sampled_exactly_as_the_ratio_sampler_decides(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    root = TraceIdRatioBased(0.5)
    tel = telemetry(monkeypatch, exporter, ParentBased(root))
    sampled = 0
    for _ in range(300):
        trace_id, span_id, flags = ids(publish(tel)["traceparent"])
        assert trace_id and span_id
        if flags & 1:
            sampled += 1
            assert trace_id & LOW < root.bound
        else:
            assert trace_id & LOW >= root.bound
            assert flags == 0x02  # the SDK's random-trace-id flag, kept
    spans = exporter.get_finished_spans()
    assert len(spans) == sampled
    assert 90 < sampled < 210
    assert all(s.context.trace_id & LOW < root.bound for s in spans)
    assert all(s.parent is None and s.kind == trace.SpanKind.PRODUCER for s in spans)


def test_a_sampled_root_is_the_span_its_traceparent_names(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(ALWAYS_ON))
    trace_id, span_id, flags = ids(publish(tel)["traceparent"])
    [span] = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id) == (trace_id, span_id)
    assert flags & 1
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == "id-1"
    assert span.attributes["messaging.destination.name"] == "t"


def test_inside_an_unsampled_trace_nothing_is_started_and_the_trace_goes_on(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(ALWAYS_ON))
    upstream = trace.SpanContext(7 << 64 | 9, 5, is_remote=True, trace_flags=trace.TraceFlags(0))
    with trace.use_span(trace.NonRecordingSpan(upstream)):
        trace_id, span_id, flags = ids(publish(tel)["traceparent"])
    assert (trace_id, flags) == (upstream.trace_id, 0)
    assert span_id != 0
    assert exporter.get_finished_spans() == ()


def test_a_handled_unsampled_message_makes_its_upstream_current(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(TraceIdRatioBased(0.0)))
    headers = publish(tel)
    upstream = tel.extract_unsampled(headers)
    assert upstream is not None
    known = trace.get_current_span(upstream).get_span_context()
    assert known.is_remote and not known.trace_flags.sampled
    assert headers["traceparent"] == f"00-{known.trace_id:032x}-{known.span_id:016x}-02"
    # What the general propagator reads from the same headers.
    general = trace.get_current_span(propagate.extract(headers)).get_span_context()
    assert general == known
    token = context.attach(upstream)
    try:  # a publish inside the handler: the same trace, still unsampled
        trace_id, _, flags = ids(publish(tel)["traceparent"])
    finally:
        context.detach(token)
    assert (trace_id, flags) == (known.trace_id, 0x02)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "00-0000000000000000000000000000000a-000000000000000b-01"},  # sampled
        {"traceparent": PLAIN, "tracestate": "a=b"},
        {"traceparent": PLAIN, "baggage": "k=v"},
        {"traceparent": "00-00000000000000000000000000000000-000000000000000b-00"},  # zero id
        {"traceparent": "00-0000000000000000000000000000000A-000000000000000b-00"},  # upper case
        {"traceparent": "01-0000000000000000000000000000000a-000000000000000b-00-x"},
        {"traceparent": "garbage"},
        {},
    ],
)
def test_anything_but_a_plain_unsampled_traceparent_takes_the_general_path(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter, headers: dict[str, str]
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(ALWAYS_ON))
    assert tel.extract_unsampled(headers) is None


@pytest.fixture
def only_tracecontext() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    yield
    propagate.set_global_textmap(before)


def test_another_sampler_decides_every_span_itself(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    tel = telemetry(monkeypatch, exporter, TraceIdRatioBased(0.0))  # not parent-based
    assert tel.unsampled() is None
    headers = publish(tel)
    assert headers["traceparent"].endswith("-00") or headers["traceparent"].endswith("-02")
    assert tel.extract_unsampled(headers) is None  # the SDK decides the handling too


def test_the_default_propagators_or_tracecontext_alone_keep_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter, only_tracecontext: None
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(TraceIdRatioBased(0.0)))
    assert tel.unsampled() is not None


def test_a_message_handled_under_a_dropped_root_records_nothing(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    tel = telemetry(monkeypatch, exporter, ParentBased(TraceIdRatioBased(0.0)))
    message = Message(id="m", body=b"")  # no trace context: a root, left out
    scope = tel.process_scope("t", "g", message, 1)
    assert scope.span is None
    scope.close()
    assert exporter.get_finished_spans() == ()

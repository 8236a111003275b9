"""Traces and metrics on every adapter, read with the OpenTelemetry SDK's in-memory
exporters: one trace runs from a publish through the handlers it triggers, through
request-reply, retries and dead letters, with W3C context carried in message headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bus
from tests.conformance.helpers import Item, unique, wait_until

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    # Global providers can be set once per process; buses started later trace too.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield


def spans_on(*topics: str) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in EXPORTER.get_finished_spans():
        if span.name.split(" ", 1)[-1] in topics:
            out.setdefault(span.name, []).append(span)
    return out


async def test_one_trace_from_publish_through_handlers_and_request_reply(bus_url: str) -> None:
    first, second, rpc = unique("t"), unique("t"), unique("t")
    done: list[int] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(first)
    async def step_one(item: Item, ctx: bus.Context) -> None:
        reply = await ctx.request(rpc, item, response=Item, timeout=10)
        await ctx.publish(second, reply)

    @svc.subscribe(second)
    async def step_two(item: Item) -> None:
        done.append(item.n)

    @svc.respond(rpc)
    async def double(item: Item) -> Item:
        return Item(item.n * 2)

    tracer = trace.get_tracer("test")
    async with bus.Bus(bus_url, services=[svc]) as b:
        with tracer.start_as_current_span("http POST /orders") as root:
            await b.publish(first, Item(21))
        await wait_until(lambda: done == [42])
    spans = spans_on(first, second, rpc)
    expected = {
        f"publish {first}", f"process {first}", f"request {rpc}", f"process {rpc}",
        f"publish {second}", f"process {second}",
    }  # fmt: skip
    assert expected <= set(spans)
    trace_id = root.get_span_context().trace_id
    assert all(s.context.trace_id == trace_id for group in spans.values() for s in group)

    def one(name: str) -> ReadableSpan:
        [span] = spans[name]
        return span

    def parent_of(name: str) -> int | None:
        parent = one(name).parent
        return parent.span_id if parent else None

    assert parent_of(f"publish {first}") == root.get_span_context().span_id
    assert parent_of(f"process {first}") == one(f"publish {first}").context.span_id
    assert parent_of(f"request {rpc}") == one(f"process {first}").context.span_id
    assert parent_of(f"process {rpc}") == one(f"request {rpc}").context.span_id
    assert parent_of(f"publish {second}") == one(f"process {first}").context.span_id
    assert parent_of(f"process {second}") == one(f"publish {second}").context.span_id
    process = one(f"process {first}")
    assert process.kind == trace.SpanKind.CONSUMER
    assert one(f"publish {first}").kind == trace.SpanKind.PRODUCER
    assert one(f"request {rpc}").kind == trace.SpanKind.CLIENT
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == bus_url.split("://")[0].split("+")[0]
    assert process.attributes["messaging.destination.name"] == first
    assert process.attributes["messaging.consumer.group.name"] == svc.name
    assert process.attributes["messaging.operation.type"] == "process"


async def test_retries_and_dead_letter_stay_in_the_publishers_trace(bus_url: str) -> None:
    topic = unique("t")
    svc = bus.Service(unique("svc"))
    calls: list[int] = []

    @svc.subscribe(topic, retry=bus.Retry(attempts=3, backoff=0.05))
    async def fails(item: Item) -> None:
        calls.append(item.n)
        raise ValueError("always")

    tracer = trace.get_tracer("test")
    async with bus.Bus(bus_url, services=[svc]) as b:
        with tracer.start_as_current_span("origin") as root:
            await b.publish(topic, Item(1))
        await wait_until(lambda: len(spans_on(topic).get(f"process {topic}", [])) == 3)
    publish = spans_on(topic)[f"publish {topic}"][0]
    attempts = sorted(spans_on(topic)[f"process {topic}"], key=lambda s: s.start_time or 0)
    assert all(s.context.trace_id == root.get_span_context().trace_id for s in attempts)
    assert all(s.parent and s.parent.span_id == publish.context.span_id for s in attempts)
    assert [s.attributes["messaging.delivery.attempt"] for s in attempts] == [1, 2, 3]  # type: ignore[index]
    events = [[e.name for e in s.events if e.name.startswith("bus.")] for s in attempts]
    assert events == [["bus.retry"], ["bus.retry"], ["bus.dead_letter"]]
    assert all(s.status.status_code == trace.StatusCode.ERROR for s in attempts)


async def test_an_unsampled_trace_records_nothing_and_carries_its_decision_on(
    bus_url: str,
) -> None:
    """A trace its root left unsampled (a sampler of 10%, say) costs a handler no span:
    the default ParentBased sampler would drop it anyway, so the bus only makes the
    upstream context current, and what the handler publishes carries the same trace id
    and the same "not sampled" flag on."""
    first, onward = unique("t"), unique("t")
    carried: list[str] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(first)
    async def relay(item: Item, ctx: bus.Context) -> None:
        await ctx.publish(onward, item)

    @svc.subscribe(onward)
    async def last(item: Item, ctx: bus.Context) -> None:
        carried.append(ctx.headers.get("traceparent", ""))

    trace_id, span_id = 0xAB << 120 | 1, 0xCD << 56 | 2
    upstream = trace.NonRecordingSpan(
        trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(0))
    )
    async with bus.Bus(bus_url, services=[svc]) as b:
        with trace.use_span(upstream):
            await b.publish(first, Item(1))
        await wait_until(lambda: carried)
    _, carried_trace, _, flags = carried[0].split("-")
    assert (carried_trace, flags) == (f"{trace_id:032x}", "00")
    recorded = [s for s in EXPORTER.get_finished_spans() if s.context.trace_id == trace_id]
    assert recorded == []


async def test_metrics_count_a_known_workload(bus_url: str) -> None:
    topic = unique("t")
    svc = bus.Service(unique("svc"))
    calls: list[int] = []

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.01))
    async def handle(item: Item) -> None:
        calls.append(item.n)
        if item.n == 0:
            raise ValueError("always")

    async with bus.Bus(bus_url, services=[svc]) as b:
        for i in range(5):
            await b.publish(topic, Item(i))
        await wait_until(lambda: len(calls) == 6)
        await wait_until(lambda: count("bus.messages.dead_lettered", topic) == 1)
    assert count("bus.messages.published", topic) == 5
    assert count("bus.messages.handled", topic) == 4
    assert count("bus.messages.failed", topic) == 2
    assert count("bus.messages.retried", topic) == 1
    assert count("bus.process.duration", topic) == 6


def count(name: str, topic: str) -> int:
    data = READER.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if (
                        point.attributes
                        and point.attributes.get("messaging.destination.name") == topic
                    ):
                        total += int(getattr(point, "value", None) or getattr(point, "count", 0))
    return total

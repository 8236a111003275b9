"""Traces and metrics with the OpenTelemetry SDK's in-memory exporters: one trace runs
from a publish through the handlers it triggers and through request-reply."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bus
from tests.conformance.helpers import Item, unique, wait_until

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    # The global providers can be set once per process; later buses trace too.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield


async def test_one_trace_from_publish_through_handlers_and_request_reply() -> None:
    EXPORTER.clear()
    first, second, rpc = unique("t"), unique("t"), unique("t")
    done: list[int] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(first)
    async def step_one(item: Item, ctx: bus.Context) -> None:
        reply = await ctx.request(rpc, item, response=Item, timeout=5)
        await ctx.publish(second, reply)

    @svc.subscribe(second)
    async def step_two(item: Item) -> None:
        done.append(item.n)

    @svc.respond(rpc)
    async def double(item: Item) -> Item:
        return Item(item.n * 2)

    tracer = trace.get_tracer("test")
    async with bus.Bus(f"memory://{unique('otel')}", services=[svc]) as b:
        with tracer.start_as_current_span("http POST /orders") as root:
            await b.publish(first, Item(21))
        await wait_until(lambda: done == [42])
    spans = EXPORTER.get_finished_spans()
    names = {s.name for s in spans}
    assert {f"publish {first}", f"process {first}", f"request {rpc}", f"process {rpc}"} <= names
    assert {f"publish {second}", f"process {second}"} <= names
    trace_id = root.get_span_context().trace_id
    mine = [s for s in spans if s.name.split(" ", 1)[-1] in (first, second, rpc)]
    assert all(s.context.trace_id == trace_id for s in mine)
    by_name = {s.name: s for s in mine}
    assert by_name[f"process {first}"].parent.span_id == by_name[f"publish {first}"].context.span_id
    assert by_name[f"process {second}"].kind == trace.SpanKind.CONSUMER
    attrs = by_name[f"process {first}"].attributes
    assert attrs["messaging.system"] == "memory"
    assert attrs["messaging.destination.name"] == first
    assert attrs["messaging.consumer.group.name"] == svc.name


async def test_metrics_count_a_known_workload() -> None:
    topic = unique("t")
    svc = bus.Service(unique("svc"))
    calls: list[int] = []

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.01))
    async def handle(item: Item) -> None:
        calls.append(item.n)
        if item.n == 0:
            raise ValueError("always")

    async with bus.Bus(f"memory://{unique('otel')}", services=[svc]) as b:
        for i in range(5):
            await b.publish(topic, Item(i))
        await wait_until(lambda: len(calls) == 6)
        await wait_until(lambda: _count("bus.messages.dead_lettered", topic) == 1)
    assert _count("bus.messages.published", topic) == 5
    assert _count("bus.messages.handled", topic) == 4
    assert _count("bus.messages.failed", topic) == 2
    assert _count("bus.messages.retried", topic) == 1


def _count(name: str, topic: str) -> int:
    data = READER.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if point.attributes.get("messaging.destination.name") == topic:
                        total += int(point.value)
    return total

"""The trace context travels in the outbox row: one trace runs from the request that
committed the transaction, through the relay, to the consumer's handler."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bus
from tests.conformance.helpers import unique

from .helpers import Step

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    # Global providers can be set once per process; buses started later trace too.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    yield


def _spans(topic: str) -> dict[str, ReadableSpan]:
    return {s.name: s for s in EXPORTER.get_finished_spans() if s.name.endswith(f" {topic}")}


async def test_one_trace_from_the_committing_request_to_the_handler(
    pg_url: str, memory_url: str
) -> None:
    topic = unique("trace")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    tracer = trace.get_tracer("test")
    async with bus.Bus(memory_url, services=[consumer], store=pg_url) as b:
        with tracer.start_as_current_span("http POST /orders") as root:
            async with b.transaction() as tx:
                await tx.publish(topic, Step("k", 1))
        with anyio.fail_after(10):  # the process span ends after the handler returns
            while f"process {topic}" not in (spans := _spans(topic)):
                await anyio.sleep(0.01)
    assert got == [1]
    assert f"publish {topic}" in spans
    trace_id = root.get_span_context().trace_id
    assert all(s.context.trace_id == trace_id for s in spans.values())

"""The ``telemetry`` scenario's runs, each in a process of its own (a tracer provider,
once set, cannot be taken back): the bus subscribed to a topic with the default
concurrency, ``callers`` callers publishing ``n`` messages one at a time, timed from the
first publish to the last message handled (once a warm-up message has gone through).
With ``--sampler RATIO`` the OpenTelemetry SDK is installed first: a parent-based
TraceIdRatio sampler, spans batched to an in-memory exporter, metrics read by an
in-memory reader.

    python -m benchmarks.suite.telemetry URL N CALLERS SIZE [--sampler 0.1]

prints one JSON line: {"rate": messages/s, "spans": spans exported, "sdk_us": ...}.
With the SDK, ``sdk_us`` is what the SDK alone spends on one sampled message, measured in
the same process after the run (no bus code: a producer span in a sampled trace, its
consumer span, both with the bus's attributes, and one histogram record): the part of
the cost no instrumentation can avoid, from which the scenario derives the ratio the bus
could reach at best. Started
by the scenario (benchmarks/suite/scenarios.py), not by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

import bus
from benchmarks.suite import drive
from benchmarks.suite.drive import uid
from benchmarks.suite.model import Payload, payloads

TIMEOUT = 120.0


class Child:
    """One side of the scenario: the run in a child process, with or without the SDK."""

    profiled = False

    def __init__(self, name: str, sampler: float | None) -> None:
        self.name = name
        self.sampler = sampler
        self.sdk_us: list[float] = []  # per run, with the SDK: see sdk_floor()

    async def run(self, url: str, n: int, callers: int, size: int) -> float:
        args = [url, str(n), str(callers), str(size)]
        if self.sampler is not None:
            args += ["--sampler", str(self.sampler)]
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.suite.telemetry", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(child.communicate(), TIMEOUT + 30)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise
        if child.returncode != 0:
            raise RuntimeError(f"telemetry run failed ({child.returncode}): {err.decode()[-2000:]}")
        got = json.loads(out.decode().strip().splitlines()[-1])
        if got.get("sdk_us") is not None:
            self.sdk_us.append(float(got["sdk_us"]))
        return float(got["rate"])


def install_sdk(ratio: float) -> Any:
    """The SDK as a production service would set it up; returns the span exporter."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter


async def measure(url: str, n: int, callers: int, size: int) -> float:
    topic = f"tel.{uid()}"
    items = payloads(n, size)
    handled = 0
    warm, done = asyncio.Event(), asyncio.Event()
    service = bus.Service(f"tel-{uid()}")

    @service.subscribe(topic)
    async def on_message(p: Payload) -> None:
        nonlocal handled
        await asyncio.sleep(0)
        if p.seq < 0:
            warm.set()
        else:
            handled += 1
            if handled == n:
                done.set()

    async with bus.Bus(url, services=[service], presence_interval=None, close_timeout=5.0) as b:
        # Set-up outside the window: the consumer has handled a first message.
        await drive.warm_until(warm, lambda: b.publish(topic, Payload(-1, 0.0, False, "")), 60.0)

        async def send(i: int) -> None:
            await b.publish(topic, items[i])

        started = time.perf_counter()
        await drive.calls_in_flight(n, callers, send)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        return n / (time.perf_counter() - started)


def sdk_floor(system: str, n: int = 3000) -> float:
    """Microseconds the installed SDK spends on one sampled message with no bus code: the
    publish and process spans with the attributes the bus gives them, and one duration
    record (best of three runs of ``n``).

    Each publish span is the child of a sampled remote parent, so the parent-based
    sampler records it and the process span under it, as it does for the messages of a
    sampled trace (roots started here would be left out 9 times in 10 at 10%, and cost
    a fraction of a recorded span)."""
    from opentelemetry import metrics, trace

    tracer = trace.get_tracer("bus-floor")
    histogram = metrics.get_meter("bus-floor").create_histogram("floor.duration", "s")
    ids = tracer.id_generator  # type: ignore[attr-defined]
    sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    sent = {
        "messaging.system": system, "messaging.operation.type": "send",
        "messaging.operation.name": "publish", "messaging.destination.name": "t",
        "messaging.message.id": "0" * 32,
    }  # fmt: skip
    handled = {
        "messaging.system": system, "messaging.operation.type": "process",
        "messaging.destination.name": "t", "messaging.consumer.group.name": "g",
        "messaging.message.id": "0" * 32, "messaging.delivery.attempt": 1,
    }  # fmt: skip
    where = {"messaging.destination.name": "t", "messaging.consumer.group.name": "g"}
    best = float("inf")
    for _ in range(3):
        recorded = 0
        started = time.perf_counter()
        for _ in range(n):
            upstream = trace.NonRecordingSpan(
                trace.SpanContext(ids.generate_trace_id(), ids.generate_span_id(), True, sampled)
            )
            publish = tracer.start_span(
                "publish t", trace.set_span_in_context(upstream), trace.SpanKind.PRODUCER, sent
            )
            publish.end()
            process = tracer.start_span(
                "process t", trace.set_span_in_context(publish), trace.SpanKind.CONSUMER, handled
            )
            recorded += process.is_recording()
            process.end()
            histogram.record(0.001, where)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
        if recorded != n:
            raise RuntimeError("the SDK floor's spans were not all sampled: measured nothing")
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    parser.add_argument("callers", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("--sampler", type=float)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # tansu refuses idempotence
    exporter = install_sdk(args.sampler) if args.sampler is not None else None
    rate = asyncio.run(measure(args.url, args.n, args.callers, args.size))
    spans, sdk_us = 0, None
    if exporter is not None:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        spans = len(exporter.get_finished_spans())
        sdk_us = sdk_floor(args.url.split(":", 1)[0])
    print(json.dumps({"rate": rate, "spans": spans, "sdk_us": sdk_us}), flush=True)


if __name__ == "__main__":
    main()

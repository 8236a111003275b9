"""Run by test_trace in a process of its own (the global tracer provider can be set once
per process, and other tests set theirs): the shop with the OpenTelemetry SDK's
in-memory exporter, one order through the HTTP API; prints the finished spans as JSON.

``python -m tests.services.trace_one_order URL STYLE PREFIX``
"""

from __future__ import annotations

import json
import sys

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services import contracts as c
from services.config import GOOD_CARD, Config
from services.gateway import serving
from services.load import client_for, place
from services.shop import Shop

EXPORTER = InMemorySpanExporter()


def install() -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # before any Bus starts
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))


async def main(url: str, style: str, prefix: str) -> None:
    cfg = Config(url=url, style=style, prefix=prefix)  # type: ignore[arg-type]
    shop = Shop(cfg)
    body = {
        "customer": "t@example.com",
        "card": GOOD_CARD,
        "lines": [{"sku": "widget", "quantity": 1}],
    }
    async with shop.bus(), serving(cfg) as base_url, client_for(base_url, cfg.api_key) as http:
        out = await place(http, body, deadline=30)
        assert out.status == c.CONFIRMED, out
        with anyio.fail_after(30):
            while not shop.notifications.sent:
                await anyio.sleep(0.01)
    spans = [
        {
            "name": s.name,
            "trace_id": format(s.context.trace_id, "032x"),
            "span_id": format(s.context.span_id, "016x"),
            "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
            "kind": s.kind.name,
            "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
        }
        for s in EXPORTER.get_finished_spans()
    ]
    print(json.dumps({"order_id": out.order_id, "spans": spans}))


if __name__ == "__main__":
    install()
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])

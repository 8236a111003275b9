"""One trace: an order's HTTP request, the bus requests and events it causes and every
handler they reach share the HTTP request's trace id (the OpenTelemetry SDK's in-memory
exporter, in a process of its own: see trace_one_order)."""

from __future__ import annotations

import json
import os
import sys
import uuid

import anyio
import pytest

from services import contracts as c
from services.config import STYLES

HANDLED = {
    "choreography": [c.ORDER_CREATE, c.ORDER_PLACED, c.STOCK_RESERVED, c.PAYMENT_COMPLETED],
    "orchestration": [c.ORDER_CREATE, c.ORDER_PLACED, c.STOCK_RESERVE, c.PAYMENT_CHARGE],
}


@pytest.mark.parametrize("style", STYLES)
async def test_an_order_is_one_trace_from_http_through_every_handler(
    shop_url: str, style: str
) -> None:
    prefix = f"trace-{uuid.uuid4().hex[:8]}"
    result = await anyio.run_process(
        [sys.executable, "-m", "tests.services.trace_one_order", shop_url, style, prefix],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    spans = json.loads(result.stdout.decode().strip().splitlines()[-1])["spans"]

    (http,) = [s for s in spans if s["name"] == "POST /orders"]
    assert http["kind"] == "SERVER" and http["parent_id"] is None
    assert http["attributes"]["http.response.status_code"] == "202"
    in_trace = [s for s in spans if s["trace_id"] == http["trace_id"]]
    names = {s["name"] for s in in_trace}
    for topic in HANDLED[style]:
        assert f"process {prefix}.{topic}" in names, (topic, sorted(names))
    settled = f"process {prefix}.{c.ORDER_CONFIRMED}"
    assert settled in names  # notifications: the last handler of the chain
    assert f"request {prefix}.{c.ORDER_CREATE}" in names
    assert f"publish {prefix}.{c.ORDER_PLACED}" in names
    # nothing of the order's flow escaped into another trace (GET polls have their own)
    flow = [s for s in spans if s["name"].split(" ")[-1].startswith(prefix)]
    strays = [
        s["name"]
        for s in flow
        if s["trace_id"] != http["trace_id"] and not s["name"].endswith(c.ORDER_GET)
    ]
    assert strays == []
    by_id = {s["span_id"]: s for s in in_trace}
    create = next(s for s in in_trace if s["name"] == f"process {prefix}.{c.ORDER_CREATE}")
    assert by_id[create["parent_id"]]["name"] == f"request {prefix}.{c.ORDER_CREATE}"

"""The outbox's size and lag: OpenTelemetry gauges measured by the relay, and a line of
``bus status --store``. A row committed long ago by another writer shows as lag until the
relay has sent it, then the outbox reads empty again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics.export import MetricsData

import bus
from bus import relay
from bus.store import open_store
from tests.conformance.helpers import unique
from tests.conformance.test_telemetry import READER, sdk  # noqa: F401 (autouse: the SDK)

from .helpers import Step, count, query


def gauges(data: MetricsData | None, store: str) -> dict[str, Any]:
    """The latest value of each bus.outbox.* gauge for ``store``."""
    found: dict[str, Any] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("bus.outbox."):
                    for point in metric.data.data_points:
                        if point.attributes.get("bus.store") == store:
                            found[metric.name] = point.value
    return found


def bus_status(store: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", "status", "--store", store, "--window", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BUS_URL": url},
    )


async def test_outbox_size_and_lag_are_gauges_and_in_bus_status(
    sqlite_url: str, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique("lag")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    store = f"{sqlite_url}?poll_interval=0.2"
    async with bus.Bus(memory_url, store=store):  # the tables, then nobody relays
        pass
    # Another writer's row, committed 100 s ago and never announced to a relay.
    headers = b'{"bus-payload-type":"Step"}'
    await query(
        sqlite_url,
        "INSERT INTO bus_outbox (topic, msg_key, message_id, headers, body, content_type, "
        "created_at) VALUES (?, NULL, 'm-1', ?, ?, 'application/json', ?)",
        topic, headers, b'{"key":"k","seq":1}', time.time() - 100,
    )  # fmt: skip
    status = await anyio.to_thread.run_sync(bus_status, sqlite_url, memory_url)
    assert status.returncode == 0, status.stderr
    assert "1 waiting, the oldest for 10" in status.stdout, status.stdout
    assert "0 dead" in status.stdout

    # A relay measures when it starts, before it claims: it sees the old row. (Not again
    # for a minute here, so the test reads that measure however slow the machine.)
    monkeypatch.setattr(relay, "STATS_INTERVAL", 60.0)
    async with bus.Bus(memory_url, services=[consumer], store=store):
        with anyio.fail_after(10):
            while got != [1]:
                await anyio.sleep(0.01)
        seen = gauges(READER.get_metrics_data(), store)
        assert seen["bus.outbox.size"] == 1 and seen["bus.outbox.lag"] >= 100, seen
    async with bus.Bus(memory_url, store=store):  # a new relay, a new measure: sent
        with anyio.fail_after(10):
            while not (seen := gauges(READER.get_metrics_data(), store)):
                await anyio.sleep(0.01)
        assert seen == {"bus.outbox.size": 0, "bus.outbox.lag": 0}, seen
    assert gauges(READER.get_metrics_data(), store) == {}, "a closed relay reports nothing"
    assert await count(sqlite_url, "bus_outbox") == 0
    plain = open_store(sqlite_url)
    await plain.open()
    try:
        stats = await plain.outbox_stats()
    finally:
        await plain.close()
    assert (stats.size, stats.lag, stats.dead) == (0, 0.0, 0)

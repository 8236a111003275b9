"""The console under test: served for real on a free loopback port, over a real broker,
with services that announce themselves every 0.2 s and count through the OpenTelemetry
SDK (the flow charts need a MeterProvider, as in production)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

import bus
from bus.console import Auth, Console, create_app, serving

TOKEN = "console-test-token"
PRESENCE = 0.2


@pytest.fixture(scope="session", autouse=True)
def meter_provider() -> Iterator[None]:
    # A process has one global provider, set once: share the reader the telemetry
    # conformance test reads, whichever of the two runs first.
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        from tests.conformance.test_telemetry import READER

        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield


@contextlib.asynccontextmanager
async def running(
    url: str, services: Sequence[bus.Service], contracts: Sequence[bus.Service] = ()
) -> AsyncIterator[tuple[bus.Bus, httpx.AsyncClient, Console]]:
    """The console on ``url`` (listening before the services start, so it hears their
    first word) and a bus running ``services``; yields the bus, an HTTP client for the
    console (not logged in) and the console's state."""
    console = Console(url, Auth(TOKEN), contracts, step=0.5, window=30.0, update_every=0.2)
    async with (
        serving(create_app(console)) as address,
        bus.Bus(url, services=services, presence_interval=PRESENCE) as b,
        httpx.AsyncClient(base_url=address, timeout=10.0) as client,
    ):
        yield b, client, console


def bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}

"""The shop on every adapter: ``shop_url`` runs a test once per broker, and
``running_shop`` starts every service and the gateway for one configuration, under a
topic prefix of its own so tests sharing a broker never see each other's messages."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from bus.testing import TestBus
from services import contracts as c
from services.config import Config
from services.gateway import serving
from services.shop import Shop
from services.state import read_now
from tests.store.conftest import pg_database  # noqa: F401 (a fixture: the stateful shop's store)

ADAPTERS = ["memory", "rabbitmq", "kafka"]


@pytest.fixture(params=ADAPTERS)
def shop_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def shop_config(url: str, **changes: Any) -> Config:
    """A configuration for tests: quick retries, a topic prefix of its own."""
    defaults: dict[str, Any] = {
        "url": url,
        "prefix": f"shop-{uuid.uuid4().hex[:8]}",
        "backoff": 0.01,
        "attempts": 4,
        "request_timeout": 10.0,
        "api_key": "test-key",
    }
    return Config(**{**defaults, **changes})


@contextlib.asynccontextmanager
async def running_shop(cfg: Config, *, seed: int = 7) -> AsyncIterator[tuple[Shop, str]]:
    """Every service of ``cfg`` on one bus and the gateway; yields the shop and the
    gateway's base URL."""
    shop = Shop(cfg, seed=seed)
    async with shop.bus(), serving(cfg) as base_url:
        await wait_healthy(base_url)
        yield shop, base_url


async def wait_healthy(base_url: str, deadline: float = 60.0) -> None:
    """Until ``GET /health`` says 200: the gateway reaches orders through the bus and
    back (on Kafka a new reply inbox takes a group assignment first)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        with anyio.fail_after(deadline):
            while True:
                try:
                    if (await http.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                await anyio.sleep(0.1)


async def settle_shop(t: TestBus, shop: Shop, deadline: float = 30.0) -> None:
    """``t.settle()`` until the shop is at rest: its outbox empty, every order final and
    told to the customer. The relay sends outbox rows straight to the broker, past what
    ``settle()`` watches, so it may return while rows wait in the outbox."""
    with anyio.fail_after(deadline):
        while True:
            await t.settle()
            waiting = read_now(shop.cfg.store, "SELECT count(*) FROM bus_outbox")[0][0]
            orders = shop.orders.store.values()
            told = sum(shop.notifications.sent.values())
            final = all(o.status in c.FINAL_STATES for o in orders)
            if not waiting and final and told >= len(orders):
                return
            await anyio.sleep(0.005)

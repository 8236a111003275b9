"""The shop on every adapter: ``shop_url`` runs a test once per broker, and
``running_shop`` starts every service and the gateway for one configuration, under a
topic prefix of its own so tests sharing a broker never see each other's messages.

``kit_config`` configures the shop for a ``bus.testing.TestBus``: on the virtual clock
(the default) its backoffs and timeouts are seconds long and cost no wall time; with
``--bus-url`` (``make test`` runs the kit's shop tests again on RabbitMQ) they are short.
``kit_exchange`` then deletes what that run made on RabbitMQ, by its exchange name.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from bus.testing.testbus import default_url
from bus.url import scheme
from services.config import Config
from services.gateway import serving
from services.shop import Shop
from tests.brokers.rabbitmq import delete_run
from tests.store.conftest import pg_database  # noqa: F401 (a fixture: the stateful shop's store)

ADAPTERS = ["memory", "rabbitmq", "kafka"]


@pytest.fixture(params=ADAPTERS)
def shop_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def shop_config(url: str | None, **changes: Any) -> Config:
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


def kit_virtual() -> bool:
    """Whether a ``TestBus`` made without a URL runs on the virtual clock (no --bus-url)."""
    url = default_url()
    return url is None or scheme(url) == "memory"


def kit_config(**changes: Any) -> Config:
    """A configuration for the shop on a ``TestBus`` made without a URL: backoffs of
    seconds and request timeouts of five on the virtual clock, a short backoff in real
    time."""
    timing = {"backoff": 2.0, "request_timeout": 5.0} if kit_virtual() else {"backoff": 0.02}
    return shop_config(None, **{**timing, **changes})


@pytest.fixture(scope="session", autouse=True)
def kit_exchange() -> Iterator[None]:
    """With ``--bus-url amqp://...?exchange=NAME``: at the end, delete the queues and
    exchanges whose names start with NAME (the TestBuses forget their groups' queues,
    not the exchanges). Nothing otherwise."""
    url = default_url()
    yield
    if url is not None and scheme(url) == "amqp":
        exchange = parse_qs(urlsplit(url).query).get("exchange", [""])[0]
        if exchange.startswith("bus-kit-"):  # only a name a kit run chose for itself
            delete_run(exchange)


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

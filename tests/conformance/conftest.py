"""One fixture parametrizes the whole conformance suite over every adapter.

An adapter joins the suite by adding its name to ADAPTERS and providing, in
tests/brokers/<name>.py, a ``<name>_url`` fixture and optionally a
``<name>_refusing_url`` fixture: a URL whose broker refuses a publish to a group that
already holds two ready messages (Kafka's: a broker that never confirms a publish, so it
fails after the URL's ``publish_timeout_ms``). In CI every adapter must run: a broker that is
missing fails its fixture, it never skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import bus
from bus.transport import Capabilities
from tests.conformance.helpers import unique

ADAPTERS = ["memory", "rabbitmq", "kafka"]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus_url(adapter: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{adapter}_url")
    return url


@pytest.fixture
def refusing_url(adapter: str, request: pytest.FixtureRequest) -> str:
    try:
        url: str = request.getfixturevalue(f"{adapter}_refusing_url")
    except pytest.FixtureLookupError:
        pytest.skip(f"{adapter}: no way to make the broker refuse a publish is declared")
    return url


@pytest.fixture
def capabilities(bus_url: str) -> Capabilities:
    return bus.Bus(bus_url).transport.capabilities


@pytest.fixture
def topic() -> str:
    return unique("t")


@pytest.fixture
def group() -> str:
    return unique("g")


@pytest.fixture
async def publisher(bus_url: str) -> AsyncIterator[bus.Bus]:
    """A bus with no handlers, to publish and request from."""
    async with bus.Bus(bus_url) as b:
        yield b

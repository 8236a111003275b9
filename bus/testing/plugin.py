"""The pytest plugin of ``bus.testing``, loaded by the ``pytest11`` entry point in every
pytest run of an environment where ``bus`` is installed. It does nothing until used:

- ``--bus-url URL`` (or ``$BUS_TEST_URL``): every ``TestBus`` made without a URL runs on
  that broker, in real time, instead of a private embedded one on the virtual clock;
- the ``test_bus`` fixture: ``async with test_bus(services=[...]) as t`` makes a
  ``TestBus`` that deletes, on leaving, the queues and groups its services made where
  the adapter can;
- failure explanations for ``assert t.published(...) == [...]`` (and ``t.handled``)
  that say what was published instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bus.testing.report import explain
from bus.testing.testbus import ENV_URL, TestBus, configure


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bus", "bus.testing")
    group.addoption(
        "--bus-url",
        dest="bus_test_url",
        default=None,
        metavar="URL",
        help=(
            "run every bus.testing.TestBus on this broker (amqp://..., kafka://...) in real "
            f"time instead of a private embedded broker on a virtual clock; also ${ENV_URL}"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    url = config.getoption("bus_test_url", default=None)
    if url:
        configure(url)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.getoption("bus_test_url", default=None):
        configure(None)


def pytest_assertrepr_compare(
    config: pytest.Config, op: str, left: object, right: object
) -> list[str] | None:
    return explain(op, left, right)


@pytest.fixture
def test_bus() -> Callable[..., TestBus]:
    """A factory of ``TestBus`` (same arguments), on ``--bus-url`` when given:
    ``async with test_bus(services=[orders]) as t: ...``."""

    def make(services: Any = (), **options: Any) -> TestBus:
        options.setdefault("cleanup", True)
        return TestBus(services, **options)

    return make

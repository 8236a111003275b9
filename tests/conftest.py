"""Shared test set-up: every async test runs on anyio's asyncio backend, and the broker
fixtures (one module per broker under tests/brokers) are available everywhere."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import HealthCheck, settings

# Shared 2-core machines stall now and then: no per-example deadline.
settings.register_profile(
    "bus", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("bus")

pytest_plugins = ["tests.brokers.memory", "tests.brokers.rabbitmq", "tests.brokers.kafka"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Mark before anyio's own hook looks, so it parametrizes the backend.
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)

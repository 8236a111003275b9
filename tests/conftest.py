"""Shared test set-up: every async test runs on anyio's asyncio backend, and the broker
fixtures (one module per broker under tests/brokers) are available everywhere."""

from __future__ import annotations

import inspect

import pytest

pytest_plugins = ["tests.brokers.memory", "tests.brokers.rabbitmq", "tests.brokers.kafka"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Mark before anyio's own hook looks, so it parametrizes the backend.
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)

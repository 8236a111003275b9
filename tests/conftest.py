"""Shared test set-up: every async test runs on anyio's asyncio backend, and the broker
fixtures (one module per broker under tests/brokers) are available everywhere."""

from __future__ import annotations

import inspect

import pytest

pytest_plugins = ["tests.brokers.memory", "tests.brokers.rabbitmq", "tests.brokers.kafka"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fn = getattr(item, "function", None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            item.add_marker(pytest.mark.anyio)

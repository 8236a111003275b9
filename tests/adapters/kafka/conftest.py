"""A connected KafkaTransport and unique names for the adapter's own tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from adapters.kafka import KafkaTransport


@pytest.fixture
async def transport(kafka_url: str) -> AsyncIterator[KafkaTransport]:
    t = KafkaTransport(kafka_url)
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def names() -> tuple[str, str]:
    """A fresh (topic, group)."""
    tag = uuid.uuid4().hex[:8]
    return f"t.{tag}", f"g-{tag}"

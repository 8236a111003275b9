"""The embedded broker needs nothing started: each test gets a broker of its own name."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def memory_url() -> str:
    return f"memory://test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def memory_refusing_url() -> str:
    return f"memory://refusing-{uuid.uuid4().hex[:8]}?max_queue=2&overflow=reject"

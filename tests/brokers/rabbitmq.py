"""RabbitMQ for tests: the broker on 127.0.0.1:5672 (guest/guest), started if it is down.

Every name a test run creates starts with one run prefix (the exchange name), and the
session ends by deleting those queues and exchanges: only this run's. A broker that
cannot be reached fails the fixture; it never skips.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

HOST, PORT = "127.0.0.1", 5672
START_DEADLINE = 90.0
RUN_PREFIX = f"bus-test-{uuid.uuid4().hex[:8]}"


def broker_up() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_broker() -> None:
    """Start RabbitMQ if nothing listens on its port, and wait for it; fail if it never comes."""
    if broker_up():
        return
    server = shutil.which("rabbitmq-server")
    if server is None:
        pytest.fail(
            f"RabbitMQ is not listening on {HOST}:{PORT} and rabbitmq-server is not installed"
        )
    subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=30)
    deadline = time.monotonic() + START_DEADLINE
    while not broker_up():
        if time.monotonic() > deadline:
            pytest.fail(f"RabbitMQ did not start listening on {HOST}:{PORT} in {START_DEADLINE}s")
        time.sleep(0.5)
    ctl = shutil.which("rabbitmqctl")
    if ctl is not None:
        subprocess.run([ctl, "await_startup"], check=False, capture_output=True, timeout=60)


def url_for(exchange: str, **options: str) -> str:
    """A URL whose exchange and connection name are ``exchange`` (so the run can find
    its own connections), with ``options`` added to the query."""
    all_options = {"exchange": exchange, "name": exchange, **options}
    query = "&".join(f"{k}={v}" for k, v in all_options.items())
    return f"amqp://guest:guest@{HOST}:{PORT}/?{query}"


def close_connections(name_prefix: str) -> int:
    """``rabbitmqctl close_connection`` every connection whose client-given name starts
    with ``name_prefix`` (this run's, never another's); returns how many."""
    ctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
    listing = subprocess.run(
        [ctl, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    closed = 0
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if f'{{"connection_name","{name_prefix}' in props:
            subprocess.run(
                [ctl, "close_connection", pid, "bus test: connection cut"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            closed += 1
    return closed


def run_names(prefix: str) -> tuple[list[str], list[str]]:
    """This run's queues and exchanges, by name prefix."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return [], []

    def listed(*args: str) -> list[str]:
        out = subprocess.run(
            [ctl, *args, "-q", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        return [n.strip() for n in out.splitlines() if n.strip().startswith(prefix)]

    return listed("list_queues"), listed("list_exchanges")


async def _delete(queues: list[str], exchanges: list[str]) -> None:
    import aio_pika

    conn = await aio_pika.connect(f"amqp://guest:guest@{HOST}:{PORT}/")
    try:
        channel = await conn.channel()
        raw = await channel.get_underlay_channel()
        for name in queues:
            await raw.queue_delete(name)
        for name in exchanges:
            await raw.exchange_delete(name)
    finally:
        await conn.close()


def delete_run(prefix: str) -> None:
    """Delete every queue and exchange whose name starts with ``prefix``."""
    queues, exchanges = run_names(prefix)
    if not queues and not exchanges:
        return
    # A thread of its own: the test session may hold an event loop in this one.
    worker = threading.Thread(target=lambda: asyncio.run(_delete(queues, exchanges)))
    worker.start()
    worker.join(60)


@pytest.fixture(scope="session")
def rabbitmq_run() -> Iterator[str]:
    """The name prefix of everything this test run creates on RabbitMQ."""
    ensure_broker()
    yield RUN_PREFIX
    delete_run(RUN_PREFIX)


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_run: str) -> str:
    return url_for(rabbitmq_run)


@pytest.fixture(scope="session")
def rabbitmq_refusing_url(rabbitmq_run: str) -> str:
    """Group queues hold at most two ready messages; RabbitMQ nacks publishes beyond."""
    return url_for(f"{rabbitmq_run}-refusing", max_length="2")

"""RabbitMQ behind TLS, for real: a node of the test's own (brokers/rabbitmq_node.py) whose
only listener is TLS, with certificates made by the test (brokers/certs.py) and a user
other than guest. The bus connects by ``amqps://`` with the CA named in the URL (aio-pika
reads ``cafile``, ``certfile``, ``keyfile``); a wrong password, an untrusted certificate
and a plain connection to the TLS port each fail at once with one ConnectionLost that
names the cause and never the password.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

import bus
from brokers import BrokerError, certs, free_port
from brokers.rabbitmq_node import RabbitNode

pytestmark = pytest.mark.slow

FAST = 5.0  # seconds a refused connection may take, at most
USER, PASSWORD = "bus-tls-user", "Sup3r-s3cret-pw"


class Ping(msgspec.Struct):
    n: int


class TlsNode:
    def __init__(self, node: RabbitNode, port: int, files: certs.TlsFiles) -> None:
        self.node, self.port, self.files = node, port, files

    def url(self, *, ca: Path | None = None, password: str = PASSWORD, **options: str) -> str:
        query = {"cafile": str(ca or self.files.ca.cert), "exchange": "tls-test", **options}
        return self.node.url(USER, password, scheme="amqps", port=self.port, **query)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    files = certs.make(tmp_path_factory.mktemp("rabbit-tls"))
    port = free_port()
    node = RabbitNode.temporary(
        f"bus-tls-{uuid.uuid4().hex[:6]}",
        plain=False,
        config_lines=[
            f"listeners.ssl.1 = 127.0.0.1:{port}",
            f"ssl_options.cacertfile = {files.ca.cert}",
            f"ssl_options.certfile = {files.server.cert}",
            f"ssl_options.keyfile = {files.server.key}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ],
        extra_ports={"amqps": port},
    )
    try:
        node.start()
        node.add_user(USER, PASSWORD)
    except BrokerError as exc:
        node.close()
        pytest.fail(f"the TLS RabbitMQ node did not start: {exc}")
    try:
        yield TlsNode(node, port, files)
    finally:
        node.close()


async def refused(url: str, caplog: pytest.LogCaptureFixture) -> str:
    """Connect to ``url``; return the error's text (ConnectionLost, or ConfigError for a
    refused login), checking it came at once and that neither it nor any log line shows
    the password."""
    started = time.monotonic()
    errors = (bus.ConnectionLost, bus.ConfigError)
    with caplog.at_level(logging.DEBUG), pytest.raises(errors) as caught:
        async with bus.Bus(url):
            pass
    took = time.monotonic() - started
    text = str(caught.value)
    assert took < FAST, f"took {took:.1f} s: {text}"
    assert PASSWORD not in text
    assert "wrong-" + PASSWORD not in caplog.text and PASSWORD not in caplog.text
    return text


async def test_the_bus_works_over_tls_as_a_user_of_its_own(tls_node: TlsNode) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"tls.{tag}", f"g-{tag}"
    got: set[int] = set()
    service = bus.Service(group)

    @service.subscribe(topic)
    async def handle(ping: Ping) -> None:
        got.add(ping.n)

    url = tls_node.url()
    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        for n in range(20):
            await publisher.publish(topic, Ping(n))
        with anyio.fail_after(20):
            while len(got) < 20:
                await anyio.sleep(0.02)


async def test_a_wrong_password_fails_at_once_and_is_never_shown(
    tls_node: TlsNode, caplog: pytest.LogCaptureFixture
) -> None:
    text = await refused(tls_node.url(password="wrong-" + PASSWORD), caplog)
    assert "refused the login" in text and "check the user and password" in text, text
    assert f"{USER}:***@" in text


async def test_an_untrusted_certificate_fails_at_once(
    tls_node: TlsNode, caplog: pytest.LogCaptureFixture
) -> None:
    text = await refused(tls_node.url(ca=tls_node.files.other_ca.cert), caplog)
    assert "CERTIFICATE_VERIFY_FAILED" in text, text


async def test_a_plain_connection_to_the_tls_port_is_told_to_use_amqps(
    tls_node: TlsNode, caplog: pytest.LogCaptureFixture
) -> None:
    url = tls_node.node.url(USER, PASSWORD, port=tls_node.port, exchange="tls-test")
    text = await refused(url, caplog)
    assert f"127.0.0.1:{tls_node.port} closed the connection" in text, text
    assert "TLS listener" in text and "amqps://" in text, text

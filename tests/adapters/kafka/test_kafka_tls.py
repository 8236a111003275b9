"""Kafka behind TLS, for real: certificates made by the test (brokers/certs.py), the bus
connecting by ``kafka+ssl://`` with the CA named in the URL, and each way of getting it
wrong failing at once with one ConnectionLost that names the cause and never the
password.

tansu 0.6 cannot serve TLS itself (its command line refuses ``--cert`` with ``--key``,
measured below), so a TLS terminator of ours (brokers/proxy.py) listens in front of it
and tansu advertises the terminator's port: the client's TLS is the real thing. SASL:
tansu offers SCRAM only, and with memory storage it can hold no user (measured below), so
a login is only ever refused here; a login that succeeds is tested on RabbitMQ.
"""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

import bus
from brokers import certs
from brokers.tansu import Tansu, broker_bin
from tests.brokers.kafka import OPTIONS, tansu_or_fail

FAST = 5.0  # seconds a refused connection may take, at most
PASSWORD = "Sup3r-s3cret-pw"


class Ping(msgspec.Struct):
    n: int


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> certs.TlsFiles:
    return certs.make(tmp_path_factory.mktemp("kafka-tls"))


@pytest.fixture(scope="module")
def tls_tansu(tls_files: certs.TlsFiles) -> Iterator[Tansu]:
    with tansu_or_fail(tls=(tls_files.server.cert, tls_files.server.key)) as broker:
        yield broker


@pytest.fixture(scope="module")
def sasl_tansu(tls_files: certs.TlsFiles) -> Iterator[Tansu]:
    """TLS in front, SASL (SCRAM) required behind."""
    server = tls_files.server
    with tansu_or_fail(tls=(server.cert, server.key), authentication=True) as broker:
        yield broker


def tls_url(broker: Tansu, ca: Path, extra: str = "", userinfo: str = "") -> str:
    return f"kafka+ssl://{userinfo}{broker.bootstrap}?{OPTIONS}&ssl_cafile={ca}{extra}"


async def refused(url: str, caplog: pytest.LogCaptureFixture) -> str:
    """Connect to ``url``; return the ConnectionLost's text, checking it came at once and
    that neither it nor any log line shows the password."""
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(bus.ConnectionLost) as caught:
        async with bus.Bus(url):
            pass
    took = time.monotonic() - started
    text = str(caught.value)
    assert took < FAST, f"took {took:.1f} s: {text}"
    assert PASSWORD not in text
    assert PASSWORD not in caplog.text
    return text


async def test_the_bus_works_over_tls_with_the_ca_named_in_the_url(
    tls_tansu: Tansu, tls_files: certs.TlsFiles
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"tls.{tag}", f"g-{tag}"
    got: set[int] = set()
    service = bus.Service(group)

    @service.subscribe(topic)
    async def handle(ping: Ping) -> None:
        got.add(ping.n)

    url = tls_url(tls_tansu, tls_files.ca.cert)
    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        for n in range(20):
            await publisher.publish(topic, Ping(n))
        with anyio.fail_after(30):
            while len(got) < 20:
                await anyio.sleep(0.02)
    assert tls_tansu.terminator is not None and tls_tansu.terminator.accepted > 0


async def test_a_client_certificate_from_the_url_is_presented(
    tls_files: certs.TlsFiles,
) -> None:
    """Mutual TLS: the terminator requires a client certificate signed by the CA."""
    server, client = tls_files.server, tls_files.client
    with tansu_or_fail(tls=(server.cert, server.key), client_ca=tls_files.ca.cert) as broker:
        url = tls_url(
            broker, tls_files.ca.cert, f"&ssl_certfile={client.cert}&ssl_keyfile={client.key}"
        )
        async with bus.Bus(url) as publisher:
            await publisher.publish(f"mtls.{uuid.uuid4().hex[:8]}", Ping(1))


async def test_an_untrusted_certificate_fails_at_once(
    tls_tansu: Tansu, tls_files: certs.TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    text = await refused(tls_url(tls_tansu, tls_files.other_ca.cert), caplog)
    assert "certificate is not trusted" in text, text
    assert "ssl_cafile" in text


async def test_a_plain_connection_to_the_tls_port_fails_at_once(
    tls_tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    text = await refused(f"kafka://{tls_tansu.bootstrap}?{OPTIONS}", caplog)
    assert "is a TLS listener, use kafka+ssl://" in text, text


async def test_a_tls_connection_to_a_plain_port_fails_at_once(
    tls_tansu: Tansu, tls_files: certs.TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """tansu's own port behind the terminator is plain: it waits for the rest of what it
    reads as a request, so only the bus's handshake probe stops the wait early."""
    plain = f"kafka+ssl://127.0.0.1:{tls_tansu.port}?{OPTIONS}&ssl_cafile={tls_files.ca.cert}"
    text = await refused(plain, caplog)
    assert "looks like a plain listener; use kafka://" in text, text


async def test_a_wrong_password_fails_at_once_and_is_never_shown(
    sasl_tansu: Tansu, tls_files: certs.TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    url = tls_url(
        sasl_tansu, tls_files.ca.cert, "&sasl_mechanism=SCRAM-SHA-512", f"alice:{PASSWORD}@"
    )
    text = await refused(url, caplog)
    assert "authentication failed" in text and "'alice'" in text, text
    assert "alice:***@" in text


async def test_a_mechanism_the_broker_does_not_offer_fails_at_once(
    sasl_tansu: Tansu, tls_files: certs.TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    url = tls_url(sasl_tansu, tls_files.ca.cert, "&sasl_mechanism=PLAIN", f"alice:{PASSWORD}@")
    text = await refused(url, caplog)
    assert "SASL PLAIN" in text and "sasl_mechanism" in text, text


@pytest.mark.tansu
def test_tansu_takes_no_certificate_and_key_together(tls_files: certs.TlsFiles) -> None:
    """tansu 0.6 refuses ``--cert`` with ``--key`` (and either alone leaves the listener in
    plain TCP), hence the terminator. Fails once tansu takes them: then tansu can serve
    TLS itself (brokers/tansu.py)."""
    done = subprocess.run(
        [str(broker_bin()), "broker", "--cert", str(tls_files.server.cert),
         "--key", str(tls_files.server.key)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "cannot be used with" in done.stderr


@pytest.mark.tansu
def test_tansu_memory_storage_can_hold_no_user(sasl_tansu: Tansu) -> None:
    """``tansu user create`` speaks Kafka to the broker, which, demanding authentication,
    refuses it before any login; and a broker started without it to make the user loses
    the user on the restart that adds ``--authentication``. Fails once a user can be made."""
    done = subprocess.run(
        [str(broker_bin()), "user", "create", "--broker", f"tcp://127.0.0.1:{sasl_tansu.port}",
         "alice", PASSWORD],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "NotAuthenticated" in sasl_tansu.tail(5000)

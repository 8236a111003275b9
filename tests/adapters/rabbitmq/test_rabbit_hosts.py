"""A URL naming several nodes of a cluster: parsing, redaction, bad hosts, and the order
the link tries them in (no cluster needed: closed ports and the shared broker)."""

from __future__ import annotations

import logging
import socket

import pytest

import bus
from adapters.rabbitmq import RabbitTransport
from adapters.rabbitmq.config import parse
from bus.errors import ConfigError, ConnectionLost
from bus.url import redact
from tests.brokers.rabbitmq import HOST, PORT
from tests.conformance.helpers import unique, wait_until
from tests.faults.rabbitmq.proxy import Proxy


def test_several_hosts_give_one_aio_pika_url_each_sharing_the_rest() -> None:
    cfg = parse("amqp://u:s3cret@h1:5672,h2:5673,[::1]:5674/vh?queue_type=quorum&heartbeat=5")
    assert cfg.hosts == ("h1:5672", "h2:5673", "[::1]:5674")
    assert cfg.amqp_urls == (
        "amqp://u:s3cret@h1:5672/vh?heartbeat=5",
        "amqp://u:s3cret@h2:5673/vh?heartbeat=5",
        "amqp://u:s3cret@[::1]:5674/vh?heartbeat=5",
    )
    assert cfg.amqp_url == cfg.amqp_urls[0]
    assert cfg.nodes == tuple(zip(cfg.hosts, cfg.amqp_urls, strict=True))
    assert (cfg.queue_type, cfg.user) == ("quorum", "u")


def test_a_host_without_a_port_takes_the_schemes_default() -> None:
    assert parse("amqp://h1,h2:5700/").hosts == ("h1:5672", "h2:5700")
    assert parse("amqps://h1,h2/").hosts == ("h1:5671", "h2:5671")
    assert parse("amqps://h1,h2/").amqp_urls[1] == "amqps://h2:5671/"


def test_one_host_goes_to_aio_pika_as_written() -> None:
    cfg = parse("amqps://u:pw@h/vh?heartbeat=5")
    assert cfg.amqp_urls == ("amqps://u:pw@h/vh?heartbeat=5",)
    assert cfg.hosts == ("h:5671",)
    assert parse("amqp:///").hosts == ("localhost:5672",)  # aio-pika's default, as before


def test_the_password_is_hidden_with_several_hosts_and_the_hosts_shown() -> None:
    url = "amqp://u:p%40ss,w0rd@h1:5672,h2:5673/vh?exchange=x"
    shown = redact(url)
    assert shown == "amqp://u:***@h1:5672,h2:5673/vh?exchange=x"
    cfg = parse(url)
    assert cfg.redacted == shown
    assert cfg.hosts == ("h1:5672", "h2:5673")  # a ',' in the password splits no host
    assert all(u.startswith("amqp://u:p%40ss,w0rd@") for u in cfg.amqp_urls)
    assert "w0rd" not in repr(RabbitTransport(url))


@pytest.mark.parametrize(
    "hosts",
    [
        "h1:5672,h2:x",  # a port that is not a number
        "h1:5672,,h2:5673",  # an empty entry
        "h1:5672,",  # a trailing comma
        "h1:5672,:5673",  # no host name
        "h1:56:72,h2",  # two colons outside brackets
        "[::1:5672,h2",  # an unclosed bracket
        "[::1]x,h2",  # something after the bracket other than :port
        "h1:٥٦٧٢,h2",  # digits, but not ASCII ones
        "h1:0,h2",  # port 0
        "h1:65536,h2",  # too large
        "h1:-1,h2",
    ],
)
def test_a_bad_host_or_port_is_a_config_error_naming_it_without_the_password(
    hosts: str,
) -> None:
    with pytest.raises(ConfigError) as info:
        RabbitTransport(f"amqp://u:s3cret@{hosts}/")
    text = str(info.value)
    assert "s3cret" not in text
    if "[" not in hosts:  # urllib cannot even split a URL with an unclosed [
        assert "u:***@" in text
        assert "host" in text and "port" in text


def test_a_bad_port_in_a_single_host_url_is_caught_at_once_too() -> None:
    with pytest.raises(ConfigError, match="from 1 to 65535"):
        parse("amqp://u:pw@h:99999/")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


async def test_the_first_connect_tries_each_host_in_order_and_logs_the_one_it_reached(
    rabbitmq_run: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bus.rabbitmq")
    dead = closed_port()
    url = f"amqp://guest:guest@{HOST}:{dead},{HOST}:{PORT}/?exchange={rabbitmq_run}"
    async with bus.Bus(url, presence_interval=None) as b:
        await b.publish("hosts.smoke", b"x")
    assert f"cannot connect to RabbitMQ at {HOST}:{dead}" in caplog.text
    assert f"connected to RabbitMQ at {HOST}:{PORT} " in caplog.text


async def test_no_host_answering_fails_once_naming_each_and_hiding_the_password() -> None:
    ports = [closed_port(), closed_port()]
    url = f"amqp://guest:s3cret@{HOST}:{ports[0]},{HOST}:{ports[1]}/"
    t = RabbitTransport(url)
    with pytest.raises(ConnectionLost) as info:
        await t.connect()
    text = str(info.value)
    assert "s3cret" not in text and "guest:***@" in text
    assert f"{HOST}:{ports[0]}: " in text and f"{HOST}:{ports[1]}: " in text
    await t.close()


async def test_a_refused_login_on_any_host_is_a_config_error(rabbitmq_run: str) -> None:
    url = f"amqp://guest:wrong@{HOST}:{closed_port()},{HOST}:{PORT}/"
    with pytest.raises(ConfigError, match="refused the login"):
        await RabbitTransport(url).connect()


async def test_a_reconnect_starts_from_the_host_after_the_one_lost(
    rabbitmq_run: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bus.rabbitmq")
    proxy = Proxy()  # the first "node": a proxy to the shared broker, taken down below
    await proxy.start()
    try:
        first, second = f"{HOST}:{proxy.port}", f"{HOST}:{PORT}"
        url = f"amqp://guest:guest@{first},{second}/?exchange={rabbitmq_run}"
        got: list[bytes] = []
        service = bus.Service(unique("hosts"))

        @service.subscribe("hosts.rotate")
        async def handle(body: bytes) -> None:
            got.append(body)

        def said(start: str) -> list[str]:
            return [m for r in caplog.records if (m := r.getMessage()).startswith(start)]

        async with bus.Bus(url, services=[service], presence_interval=None) as b:
            assert said(f"connected to RabbitMQ at {first} ")
            await proxy.stop()  # connections cut, the first node refuses from now on
            await wait_until(lambda: any(m.endswith(f" at {second}") for m in said("reconn")))
            await b.publish("hosts.rotate", b"after")
            await wait_until(lambda: got == [b"after"])
        # The node after the lost one was tried first, and answered: none tried the lost one.
        assert not [m for m in said("reconnecting to") if f" at {first} " in m]
    finally:
        await proxy.stop()

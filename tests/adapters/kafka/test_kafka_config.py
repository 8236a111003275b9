"""The URL is parsed into one config; credentials never show."""

from __future__ import annotations

import socket

import pytest

from adapters.kafka import KafkaTransport
from adapters.kafka.config import parse
from bus.errors import ConfigError


def test_hosts_and_options() -> None:
    c = parse("kafka://a:9092,b:9093?partitions=3&fetch_max_wait_ms=5&session_timeout_ms=3000")
    assert c.bootstrap_servers == ["a:9092", "b:9093"]
    assert (c.partitions, c.fetch_max_wait_ms, c.session_timeout_ms) == (3, 5, 3000)
    assert c.heartbeat_interval_ms == 1000
    assert c.client_options() == {"bootstrap_servers": ["a:9092", "b:9093"], "client_id": "bus"}


def test_defaults() -> None:
    c = parse("kafka://localhost:9092")
    assert (c.partitions, c.replication_factor, c.session_timeout_ms) == (8, 1, 10000)
    assert not c.tls and c.sasl_mechanism is None


def test_sasl_from_userinfo_is_redacted_everywhere() -> None:
    url = "kafka://alice:s3cret@broker:9092?sasl_mechanism=scram-sha-512"
    c = parse(url)
    options = c.client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(c)
    assert "s3cret" not in repr(KafkaTransport(url))
    assert "s3cret" not in c.redacted


def test_sasl_from_query_over_tls() -> None:
    url = "kafka+ssl://broker:9093?sasl_username=bob&sasl_password=pw&ssl_check_hostname=false"
    c = parse(url)
    options = c.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "PLAIN"
    assert options["ssl_context"].check_hostname is False
    assert "pw" not in c.redacted.replace("password", "")


def test_tls_without_sasl() -> None:
    options = parse("kafka+ssl://broker:9093").client_options()
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"] is not None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://", "names no broker"),
        ("kafka://host", "host:port"),
        ("kafka://h:1?partitions=x", "partitions"),
        ("kafka://h:1?nope=1", "unknown option"),
        ("kafka://h:1?sasl_mechanism=GSSAPI&sasl_username=a&sasl_password=b", "sasl_mechanism"),
        ("kafka://h:1?sasl_mechanism=PLAIN", "needs a user"),
        ("kafka://h:1?session_timeout_ms=100&heartbeat_interval_ms=200", "heartbeat"),
        ("kafka://h:1?read_ahead=lots", r"option 'read_ahead' .*Expected `int`, got `str`"),
        ("kafka://h:1?partitions=-2", r"option 'partitions' .*Expected `int` >= 0"),
        ("kafka://h:1?publish_timeout_ms=0", r"option 'publish_timeout_ms' .*Expected `int` >= 1"),
        ("kafka://h:1?ssl_check_hostname=maybe", r"option 'ssl_check_hostname' .*Expected `bool`"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse(url)


def test_option_strings_become_ints_and_bools() -> None:
    c = parse(
        "kafka+ssl://h:1?read_ahead=7&max_poll_interval_ms=3000&publish_timeout_ms=1500"
        "&ssl_check_hostname=FALSE&heartbeat_interval_ms=0&session_timeout_ms=6000"
    )
    assert (c.read_ahead, c.max_poll_interval_ms, c.publish_timeout_ms) == (7, 3000, 1500)
    assert c.ssl_check_hostname is False
    assert c.heartbeat_interval_ms == 2000  # 0: derived from the session timeout
    assert parse("kafka://h:1?ssl_check_hostname=1").ssl_check_hostname is True


def test_zero_counts_are_raised_to_one_as_before() -> None:
    c = parse("kafka://h:1?partitions=0&replication_factor=0&read_ahead=0&commit_interval_ms=0")
    assert (c.partitions, c.replication_factor, c.read_ahead, c.commit_interval_ms) == (1,) * 4


def test_constructor_does_not_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        t = KafkaTransport(f"kafka://127.0.0.1:{port}")
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody knocked
            server.accept()
    assert t.config.bootstrap_servers == [f"127.0.0.1:{port}"]


async def test_first_connect_failure_is_loud_and_redacted() -> None:
    from bus.errors import ConnectionLost

    t = KafkaTransport("kafka://user:hunter2@127.0.0.1:1?sasl_mechanism=PLAIN")
    with pytest.raises(ConnectionLost) as caught:
        await t.connect()
    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in str(caught.value)

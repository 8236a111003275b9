"""URL parsing and the delay grid: no broker needed."""

from __future__ import annotations

import socket

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.rabbitmq import RabbitTransport
from adapters.rabbitmq.config import parse
from adapters.rabbitmq.topology import delay_bucket_ms
from bus.errors import ConfigError


def test_defaults_and_options() -> None:
    default = parse("amqp://u:secret@h:5672/vh")
    assert (default.exchange, default.queue_type, default.confirm) == ("bus", "classic", True)
    assert default.prefetch is None and default.max_length is None
    cfg = parse(
        "amqps://u:secret@h/vh?exchange=ex&prefetch=7&queue_type=quorum&confirm=false"
        "&heartbeat=5&max_length=3"
    )
    assert (cfg.exchange, cfg.prefetch, cfg.queue_type, cfg.confirm) == ("ex", 7, "quorum", False)
    assert cfg.max_length == 3
    # aio-pika gets its own options, not ours
    assert cfg.amqp_url == "amqps://u:secret@h/vh?heartbeat=5"
    assert "secret" not in cfg.redacted


@pytest.mark.parametrize(
    ("query", "hint"),
    [
        ("queue_type=stream", "classic or quorum"),
        ("prefetch=0", "1 or more"),
        ("prefetch=x", "1 or more"),
        ("prefetch=-3", "1 or more"),
        ("prefetch=", "1 or more"),
        ("max_length=0", "1 or more"),
        ("max_length=lots", "1 or more"),
        ("confirm=maybe", "true or false"),
        ("confirm=2", "true or false"),
        ("confirm=", "true or false"),
        ("exchange=amq.topic", "not starting 'amq.'"),
        ("exchange=a:b", "A-Z a-z 0-9"),
        ("exchange=" + "x" * 41, "1-40 characters"),
    ],
)
def test_bad_options_name_themselves_without_the_password(query: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        RabbitTransport(f"amqp://u:secret@h/?heartbeat=5&{query}")
    name, _, value = query.partition("=")
    assert f"{name}={value!r}" in str(info.value)
    assert hint in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("FALSE", False), ("1", True), ("0", False)]
)
def test_confirm_takes_the_usual_spellings_of_a_bool(value: str, expected: bool) -> None:
    assert parse(f"amqp://h/?confirm={value}").confirm is expected


def test_queue_type_ignores_case_and_the_user_is_read_from_the_url() -> None:
    assert parse("amqp://h/?queue_type=Quorum").queue_type == "quorum"
    assert parse("amqp://h/").user == "guest"
    assert parse("amqp://b%40ob:pw@h/").user == "b@ob"


async def test_constructor_does_not_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        port = server.getsockname()[1]
        t = RabbitTransport(f"amqp://guest:guest@127.0.0.1:{port}/")
        await anyio.sleep(0.2)  # room for a connect the constructor might have started
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody knocked
    assert f"127.0.0.1:{port}" in repr(t)


@given(st.floats(min_value=0.0, max_value=86_400.0, allow_nan=False))
def test_delay_is_rounded_up_never_down_and_by_at_most_a_tenth(delay: float) -> None:
    ms = delay_bucket_ms(delay)
    assert ms >= delay * 1000
    assert ms <= max(1.0, delay * 1000) * 1.1 + 1

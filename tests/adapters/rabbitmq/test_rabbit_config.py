"""URL parsing and the delay grid: no broker needed."""

from __future__ import annotations

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
    "query",
    ["queue_type=stream", "prefetch=0", "prefetch=x", "confirm=maybe", "exchange=amq.topic"],
)
def test_bad_options_name_themselves_without_the_password(query: str) -> None:
    with pytest.raises(ConfigError) as info:
        RabbitTransport(f"amqp://u:secret@h/?{query}")
    assert query.split("=")[0] in str(info.value)
    assert "secret" not in str(info.value)


def test_constructor_does_not_connect() -> None:
    RabbitTransport("amqp://guest:guest@127.0.0.1:1/")  # nothing listens on port 1


@given(st.floats(min_value=0.0, max_value=86_400.0, allow_nan=False))
def test_delay_is_rounded_up_never_down_and_by_at_most_a_tenth(delay: float) -> None:
    ms = delay_bucket_ms(delay)
    assert ms >= delay * 1000
    assert ms <= max(1.0, delay * 1000) * 1.1 + 1

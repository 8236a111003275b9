"""``publish_timeout_ms``: a publish the broker never confirms raises PublishError in
bounded time. The broker is a real tansu behind a proxy that black-holes Produce
requests (tests/brokers/kafka_proxy.py); nothing is mocked."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest

import bus
from adapters.kafka.config import parse
from tests.brokers.kafka import OPTIONS, REFUSING_TIMEOUT_MS, Tansu
from tests.brokers.kafka_proxy import Proxy


def test_default_and_given_publish_timeout() -> None:
    assert parse("kafka://h:1").publish_timeout_ms == 30000
    assert parse("kafka://h:1?publish_timeout_ms=1500").publish_timeout_ms == 1500


@pytest.mark.parametrize("value", ["x", "-5", "1.5", "0", ""])
def test_a_bad_publish_timeout_is_a_config_error(value: str) -> None:
    with pytest.raises(bus.ConfigError, match="publish_timeout_ms"):
        parse(f"kafka://h:1?publish_timeout_ms={value}")


async def test_an_unconfirmed_publish_raises_within_the_timeout(
    kafka_refusing_broker: tuple[Tansu, Proxy], kafka_refusing_url: str
) -> None:
    _, proxy = kafka_refusing_broker
    topic = f"unconfirmed.{uuid.uuid4().hex[:8]}"
    timeout = REFUSING_TIMEOUT_MS / 1000
    swallowed = proxy.swallowed
    async with bus.Bus(kafka_refusing_url, presence_interval=None) as b:
        for publish in (
            lambda: b.publish(topic, b"one"),
            lambda: b.publish_many(topic, [b"two", b"three"]),
        ):
            started = time.monotonic()
            with anyio.fail_after(3 * timeout), pytest.raises(bus.PublishError) as caught:
                await publish()
            elapsed = time.monotonic() - started
            assert elapsed < 3 * timeout
            assert elapsed >= timeout * 0.9, "raised before the broker had its time"
            message = str(caught.value)
            assert repr(topic) in message
            assert f"within {REFUSING_TIMEOUT_MS} ms" in message
            assert "publish_timeout_ms" in message
    assert proxy.swallowed > swallowed, "the proxy black-holed the Produce requests"


async def test_a_short_timeout_still_publishes_to_a_broker_that_answers(
    kafka_broker: Tansu,
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = f"answered.{tag}"
    got: list[bytes] = []
    service = bus.Service(f"g-{tag}")

    @service.subscribe(topic)
    async def handle(body: bytes) -> None:
        got.append(body)

    url = kafka_broker.url(f"{OPTIONS}&publish_timeout_ms={REFUSING_TIMEOUT_MS}")
    async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
        await publisher.publish(topic, b"one")
        await publisher.publish_many(topic, [b"two", b"three"])
        with anyio.fail_after(20):
            while len(got) < 3:
                await anyio.sleep(0.02)
    assert sorted(got) == [b"one", b"three", b"two"]

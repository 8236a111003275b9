"""Topic and group names: one rule in the core, so no two subscriptions can end up on one
broker queue or topic, and a name good on one broker is good on all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from adapters.kafka import topics
from adapters.rabbitmq import topology
from adapters.rabbitmq.config import parse as rabbit_config
from bus import names

TOPIC_CHARS = "abcXYZ019._-"
GROUP_CHARS = "abcXYZ019_-"


@pytest.mark.parametrize(
    "topic", ["", "order placed", "order/placed", "orders.*", "orders.#", "a:b", "é", "x" * 121]
)
def test_bad_topics_are_refused_everywhere_with_the_rule(topic: str) -> None:
    svc = bus.Service("s")
    with pytest.raises(bus.ConfigError, match=r"not a valid topic name: use 1-120 characters"):
        svc.subscribe(topic)
    with pytest.raises(bus.ConfigError, match="not a valid topic name"):
        names.check_topic(topic)


@pytest.mark.parametrize("group", ["", "a.b", "a:b", "with space", "x" * 61])
def test_bad_groups_and_service_names_are_refused_with_the_rule(group: str) -> None:
    with pytest.raises(bus.ConfigError, match=r"service name .*\(no '\.' or ':'"):
        bus.Service(group)
    with pytest.raises(bus.ConfigError, match=r"group .*\(no '\.' or ':'"):
        bus.Service("s").subscribe("t", group=group)


async def test_publish_request_and_the_dead_letter_calls_check_names() -> None:
    async with bus.Bus("memory://") as b:
        with pytest.raises(bus.ConfigError, match="topic"):
            await b.publish("a b", b"x")
        with pytest.raises(bus.ConfigError, match="topic"):
            await b.publish_many("a*", [b"x"])
        with pytest.raises(bus.ConfigError, match="topic"):
            await b.request("a#", b"x", response=bytes)
        with pytest.raises(bus.ConfigError, match="group"):
            await b.replay("t", group="a.b")
        with pytest.raises(bus.ConfigError, match="group"):
            [letter async for letter in b.dead_letters("t", group="a:b")]


@pytest.mark.parametrize("wrong", [None, 42, b"orders", ["orders"], {"t": 1}])
def test_a_topic_or_group_of_the_wrong_type_is_a_config_error(wrong: object) -> None:
    with pytest.raises(bus.ConfigError, match="not a valid topic name"):
        names.check_topic(wrong)  # type: ignore[arg-type]
    with pytest.raises(bus.ConfigError, match="not a valid group"):
        names.check_group(wrong)  # type: ignore[arg-type]


def test_a_good_topic_stays_good_once_cached() -> None:
    assert names.check_topic("order.placed") == "order.placed"
    assert names.check_topic("order.placed") == "order.placed"


def test_the_longest_names_fit_the_brokers_limits() -> None:
    topic, group = "t" * names.TOPIC_MAX, "g" * names.GROUP_MAX
    assert len(topics.retry_topic(topic, group)) <= 249
    assert len(topics.dead_letter_topic(topic, group)) <= 249
    config = rabbit_config("amqp://h/?exchange=" + "e" * 40)
    delay = topology.group_queue(config, topic, group) + ":delay:" + "9" * 10 + ":kept"
    for name in (delay, topology.dead_letter_queue(config, topic, group)):
        assert len(name.encode()) <= 255


@given(
    st.text(TOPIC_CHARS, min_size=1, max_size=12),
    st.text(GROUP_CHARS, min_size=1, max_size=12),
    st.text(TOPIC_CHARS, min_size=1, max_size=12),
    st.text(GROUP_CHARS, min_size=1, max_size=12),
)
def test_distinct_subscriptions_never_share_a_broker_name(
    topic_a: str, group_a: str, topic_b: str, group_b: str
) -> None:
    if (topic_a, group_a) == (topic_b, group_b):
        return
    config = rabbit_config("amqp://h/")
    for derive in (topics.retry_topic, topics.dead_letter_topic):
        assert derive(topic_a, group_a) != derive(topic_b, group_b)
    for derive in (topology.group_queue, topology.dead_letter_queue):
        assert derive(config, topic_a, group_a) != derive(config, topic_b, group_b)

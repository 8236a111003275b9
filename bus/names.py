"""The names a service may give topics and consumer groups, checked once in the core.

Adapters build broker names out of them: RabbitMQ queues ``<exchange>:<group>:<topic>``
(with ``:dlq`` and ``:delay:<ms>`` after), Kafka topics ``<topic>.<group>.retry`` and
``.dlq``. Those must never collide, and a name must mean the same on every broker, so:

- a topic is 1-120 of ``A-Z a-z 0-9 . _ -``: what Kafka allows in a topic, and nothing
  that RabbitMQ would read as a binding wildcard (``*``, ``#``);
- a group (and so a service name) is 1-60 of ``A-Z a-z 0-9 _ -``: no ``.`` or ``:``,
  the separators above, so ``topic a.b + group c`` and ``topic a + group b.c`` can
  never name the same queue or topic.

The lengths keep the longest derived name under Kafka's 249 characters and RabbitMQ's
255 bytes (with an exchange name of up to 40).
"""

from __future__ import annotations

import re

from bus.errors import ConfigError

TOPIC_MAX = 120
GROUP_MAX = 60
_TOPIC = re.compile(rf"[A-Za-z0-9._-]{{1,{TOPIC_MAX}}}")
_GROUP = re.compile(rf"[A-Za-z0-9_-]{{1,{GROUP_MAX}}}")

# Topics already found good: a publish checks its topic with one set lookup. Bounded, so
# a service publishing to ever new topics does not grow it without end.
_good_topics: set[str] = set()
_GOOD_TOPICS_MAX = 10_000


def check_topic(topic: str) -> str:
    """``topic`` if it is a valid topic name, else a ConfigError saying why."""
    try:
        if topic in _good_topics:
            return topic
    except TypeError:  # unhashable: certainly not a topic name, said below
        pass
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise ConfigError(
            f"topic {topic!r} is not a valid topic name: use 1-{TOPIC_MAX} characters "
            "from A-Z a-z 0-9 . _ - (for example 'order.placed')"
        )
    if len(_good_topics) < _GOOD_TOPICS_MAX:
        _good_topics.add(topic)
    return topic


def check_group(group: str, kind: str = "group") -> str:
    """``group`` if it is a valid consumer group (or service) name, else a ConfigError."""
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise ConfigError(
            f"{kind} {group!r} is not a valid {kind}: use 1-{GROUP_MAX} characters from "
            "A-Z a-z 0-9 _ - (no '.' or ':', which brokers use to join a group to its "
            "topic; for example 'order-audit')"
        )
    return group

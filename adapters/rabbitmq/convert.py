"""Message <-> AMQP: which envelope field rides in which AMQP property or header.

``id`` -> message_id, ``correlation_id``, ``reply_to``, ``content_type`` -> the AMQP
properties of the same names; ``headers`` -> AMQP headers (UTF-8 strings); ``key`` -> the
``bus-key`` header, because the routing key is the topic. A foreign message without a
message_id gets a fresh id; one without a content type is read as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from bus.message import JSON, Message, new_id

KEY_HEADER = "bus-key"
TRANSIENT = 1
PERSISTENT = 2

# Headers RabbitMQ adds on its own (dead-lettering through a delay queue, quorum
# delivery counts): bookkeeping of the broker, never part of a bus message.
_BROKER_HEADERS = frozenset({"x-death", "x-delivery-count"})
_BROKER_PREFIXES = ("x-first-death-", "x-last-death-")


def properties(
    message: Message, *, reply_to: str | None = None, persistent: bool = True
) -> Basic.Properties:
    """AMQP properties for ``message``; ``reply_to`` overrides the message's own.

    Requests and replies travel ``persistent=False``: a reply to direct reply-to is never
    stored, and a request is worthless once its requester's channel (its reply address)
    is gone, which a broker restart ensures. Sparing them the disk shortens a round trip.
    """
    headers: dict[str, Any] = message.headers  # only read (encoded) by pamqp
    if message.key is not None:
        headers = {**headers, KEY_HEADER: message.key}
    return Basic.Properties(
        content_type=message.content_type,
        headers=headers,
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        correlation_id=message.correlation_id,
        reply_to=reply_to if reply_to is not None else message.reply_to,
        message_id=message.id,
    )


def to_message(delivered: DeliveredMessage) -> Message:
    """The bus Message a delivered AMQP message carries."""
    props = delivered.header.properties
    headers = _headers(props.headers) if props.headers else {}
    key = headers.pop(KEY_HEADER, None)
    return Message(
        id=props.message_id or new_id(),
        body=delivered.body,
        headers=headers,
        key=key,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        content_type=props.content_type or JSON,
    )


def delivery_count(delivered: DeliveredMessage) -> int:
    """How many times the broker handed this message out before: a quorum queue's
    x-delivery-count when present, else 1 if the redelivered flag is set."""
    headers = delivered.header.properties.headers
    if headers:
        count = headers.get("x-delivery-count")
        if isinstance(count, int) and count > 0:
            return count
    return 1 if getattr(delivered.delivery, "redelivered", False) else 0


def _headers(raw: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw.items():
        if name in _BROKER_HEADERS or name.startswith(_BROKER_PREFIXES):
            continue
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, bytes | bytearray):
            out[name] = bytes(value).decode("utf-8", "replace")
        elif value is not None:
            out[name] = str(value)
    return out

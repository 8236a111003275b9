"""Message <-> AMQP: which envelope field rides in which AMQP property or header.

``id`` -> message_id, ``correlation_id``, ``reply_to``, ``content_type`` -> the AMQP
properties of the same names; ``headers`` -> AMQP headers (UTF-8 strings); ``key`` -> the
``bus-key`` header, because the routing key is the topic. A foreign message without a
content type is read as JSON. One without a message_id gets an id derived from its body
and properties, the same on every delivery of it, so a copy made twice (a connection lost
between a dead letter and its ack) is recognisably the same message.

A delivered message keeps the properties it came with (``Message.native``); a copy of it
(retry, dead letter, replay, a return) is written from them, so what the envelope cannot
hold survives: header values of any AMQP type, priority, timestamp, type, app_id,
expiration, a missing content type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from adapters.rabbitmq.native import CopyProperties, table
from bus.message import JSON, Message, new_id

KEY_HEADER = "bus-key"
TRANSIENT = 1
PERSISTENT = 2

# Headers RabbitMQ adds on its own (dead-lettering through a delay queue, quorum
# delivery counts): bookkeeping of the broker, never part of a bus message or a copy.
_BROKER_HEADERS = frozenset({"x-death", "x-delivery-count"})
_BROKER_PREFIXES = ("x-first-death-", "x-last-death-")


def properties(
    message: Message,
    *,
    reply_to: str | None = None,
    persistent: bool = True,
    user: str | None = None,
) -> Basic.Properties:
    """AMQP properties for ``message``; ``reply_to`` overrides the message's own.

    Requests and replies travel ``persistent=False``: a reply to direct reply-to is never
    stored, and a request is worthless once its requester's channel (its reply address)
    is gone, which a broker restart ensures. Sparing them the disk shortens a round trip.

    A message read from RabbitMQ is written from the properties it was delivered with;
    ``user`` is who we log in as (a user_id naming anyone else is dropped: RabbitMQ
    would refuse the copy).
    """
    if isinstance(message.native, Basic.Properties):
        return _copy(message, message.native, reply_to=reply_to, persistent=persistent, user=user)
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


def _copy(
    message: Message,
    native: Basic.Properties,
    *,
    reply_to: str | None,
    persistent: bool,
    user: str | None,
) -> Basic.Properties:
    content_type = message.content_type
    if native.content_type is None and content_type == JSON:
        content_type = None  # read as JSON, written as it came: without one
    return CopyProperties(
        content_type=content_type,
        content_encoding=native.content_encoding,
        headers=merge_headers(native.headers or {}, message),
        # A copy is parked or delayed on a durable queue: it must outlive a restart.
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        priority=native.priority,
        correlation_id=message.correlation_id,
        reply_to=reply_to if reply_to is not None else message.reply_to,
        expiration=native.expiration,
        message_id=message.id,
        timestamp=native.timestamp,
        message_type=native.message_type,
        user_id=native.user_id if native.user_id == user else None,
        app_id=native.app_id,
    )


def merge_headers(native: Mapping[str, Any], message: Message) -> dict[str, Any]:
    """The headers of a copy of ``message``: each native entry whose key the message
    still has with the string it was read as keeps its native value (and place); entries
    the core changed or added are UTF-8 strings; entries it removed, and the broker's
    bookkeeping, are dropped."""
    strings = message.headers
    if message.key is not None:
        strings = {**strings, KEY_HEADER: message.key}
    out: dict[str, Any] = {}
    for name, value in native.items():
        text = strings.get(name)
        if text is None or _bookkeeping(name):
            continue
        out[name] = value if text == _text(value) else text
    for name, text in strings.items():
        if name not in out:
            out[name] = text
    return out


def to_message(delivered: DeliveredMessage) -> Message:
    """The bus Message a delivered AMQP message carries."""
    props = delivered.header.properties
    headers = _headers(props.headers) if props.headers else {}
    key = headers.pop(KEY_HEADER, None)
    return Message(
        id=props.message_id or derived_id(props, delivered.body),
        body=delivered.body,
        headers=headers,
        key=key,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        content_type=props.content_type or JSON,
        native=props,
    )


def derived_id(props: Basic.Properties, body: bytes) -> str:
    """An id for a message that has none: 32 hex characters of a hash of its body and
    properties (the broker's bookkeeping headers left out), equal on every delivery of
    it. Two such messages alike in every byte get the same id."""
    digest = hashlib.blake2b(body, digest_size=16)
    try:
        headers = {k: v for k, v in (props.headers or {}).items() if not _bookkeeping(k)}
        digest.update(table(headers))
    except (TypeError, ValueError, UnicodeError):  # a value no encoder takes: no stable id
        return new_id()
    fields = tuple(getattr(props, name) for name in props.__slots__ if name != "headers")
    digest.update(repr(fields).encode())
    return digest.hexdigest()


def delivery_count(delivered: DeliveredMessage) -> int:
    """How many times the broker handed this message out before: a quorum queue's
    x-delivery-count when present, else 1 if the redelivered flag is set."""
    headers = delivered.header.properties.headers
    if headers:
        count = headers.get("x-delivery-count")
        if isinstance(count, int) and count > 0:
            return count
    return 1 if getattr(delivered.delivery, "redelivered", False) else 0


def _bookkeeping(name: str) -> bool:
    return name in _BROKER_HEADERS or name.startswith(_BROKER_PREFIXES)


def _text(value: Any) -> str:
    """A header value as the envelope's string (a void one as the empty string)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _headers(raw: Mapping[str, Any]) -> dict[str, str]:
    return {name: _text(value) for name, value in raw.items() if not _bookkeeping(name)}

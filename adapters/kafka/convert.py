"""Message <-> Kafka record: every Message field rides in record headers (UTF-8 bytes).

A record from a foreign producer needs none of them: with no id header its id is
``topic-partition-offset`` (the same on every read), with no content type it is JSON.
"""

from __future__ import annotations

from typing import Any

from bus.message import JSON, Message

MESSAGE_ID = "bus-message-id"
CORRELATION_ID = "bus-correlation-id"
REPLY_TO = "bus-reply-to"
CONTENT_TYPE = "content-type"
DUE = "bus-kafka-due-ms"
"""On a retry-topic record: when it is due, in Unix epoch milliseconds."""

_OWN = frozenset({MESSAGE_ID, CORRELATION_ID, REPLY_TO, CONTENT_TYPE, DUE})
Headers = list[tuple[str, bytes]]


def to_record(message: Message, extra: Headers | None = None) -> tuple[bytes | None, Headers]:
    """The record key and headers that carry ``message``."""
    headers: Headers = [(MESSAGE_ID, message.id.encode())]
    if message.correlation_id is not None:
        headers.append((CORRELATION_ID, message.correlation_id.encode()))
    if message.reply_to is not None:
        headers.append((REPLY_TO, message.reply_to.encode()))
    if message.content_type is not None:
        headers.append((CONTENT_TYPE, message.content_type.encode()))
    for name, value in message.headers.items():
        headers.append((name, value.encode()))
    if extra:
        headers.extend(extra)
    key = message.key.encode() if message.key is not None else None
    return key, headers


def from_record(record: Any) -> tuple[Message, int | None]:
    """The Message a consumed record carries, and its due time (epoch ms) if it has one."""
    message_id = correlation_id = reply_to = content_type = due = None
    headers: dict[str, str] = {}
    for name, raw in record.headers:
        value = raw.decode("utf-8", "replace") if raw is not None else ""
        if name not in _OWN:
            headers[name] = value
        elif name == MESSAGE_ID:
            message_id = value
        elif name == CONTENT_TYPE:
            content_type = value
        elif name == CORRELATION_ID:
            correlation_id = value
        elif name == REPLY_TO:
            reply_to = value
        else:
            due = value
    key = record.key
    value = record.value
    message = Message(
        id=message_id or f"{record.topic}-{record.partition}-{record.offset}",
        body=value if value is not None else b"",
        headers=headers,
        key=key.decode("utf-8", "replace") if key is not None else None,
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type=content_type or JSON,
    )
    return message, int(due) if due and due.isdigit() else None

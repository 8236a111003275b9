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
    own: dict[str, str] = {}
    headers: dict[str, str] = {}
    for name, raw in record.headers or ():
        value = raw.decode("utf-8", "replace") if raw is not None else ""
        if name in _OWN:
            own[name] = value
        else:
            headers[name] = value
    key = record.key
    due = own.get(DUE)
    message = Message(
        id=own.get(MESSAGE_ID) or f"{record.topic}-{record.partition}-{record.offset}",
        body=record.value if record.value is not None else b"",
        headers=headers,
        key=key.decode("utf-8", "replace") if key is not None else None,
        correlation_id=own.get(CORRELATION_ID),
        reply_to=own.get(REPLY_TO),
        content_type=own.get(CONTENT_TYPE) or JSON,
    )
    return message, int(due) if due and due.isdigit() else None

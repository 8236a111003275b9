"""Message <-> Kafka record: every Message field rides in record headers (UTF-8 bytes).

A record from a foreign producer needs none of them: with no id header its id is
``topic-partition-offset`` (the same on every read), with no content type it is JSON.

A consumed message keeps the record itself in ``Message.native`` (its raw headers and
key; no copy of them is made per record), and a copy written from it (retry, dead
letter, replay) starts from them: a header whose decoded value the core left unchanged
is written as it was read, bytes that are not UTF-8, null values and every repeat of
its key included; a changed or new one is written once as UTF-8; one the core removed
is dropped. A missing content type stays missing. The id is always written
(``bus-message-id``), so a foreign record keeps the id it was logged under through its
retries, dead letter and replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka.structs import ConsumerRecord

from bus.message import JSON, Message

MESSAGE_ID = "bus-message-id"
CORRELATION_ID = "bus-correlation-id"
REPLY_TO = "bus-reply-to"
CONTENT_TYPE = "content-type"
DUE = "bus-kafka-due-ms"
"""On a retry-topic record: when it is due, in Unix epoch milliseconds."""

_OWN = frozenset({MESSAGE_ID, CORRELATION_ID, REPLY_TO, CONTENT_TYPE, DUE})
Headers = list[tuple[str, bytes]]


def _text(raw: bytes | None) -> str:
    """A header value or key as the envelope reads it."""
    return raw.decode("utf-8", "replace") if raw is not None else ""


def to_record(message: Message, extra: Headers | None = None) -> tuple[bytes | None, Headers]:
    """The record key and headers that carry ``message``."""
    native = message.native
    if isinstance(native, ConsumerRecord):
        key, headers = _copy(message, native)
    else:
        key = message.key.encode() if message.key is not None else None
        headers = [(MESSAGE_ID, message.id.encode())]
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
    return key, headers


def _copy(message: Message, native: ConsumerRecord[Any, Any]) -> tuple[bytes | None, Headers]:
    """Key and headers of a copy of a consumed record (the merge rule of the docstring)."""
    read = {name: _text(raw) for name, raw in native.headers}  # the last repeat wins, as read
    if CONTENT_TYPE in read:
        read[CONTENT_TYPE] = read[CONTENT_TYPE] or JSON  # as from_record reads an empty one
    wanted: dict[str, str] = {MESSAGE_ID: message.id}
    if message.correlation_id is not None:
        wanted[CORRELATION_ID] = message.correlation_id
    if message.reply_to is not None:
        wanted[REPLY_TO] = message.reply_to
    content_type = message.content_type
    if content_type is not None and (content_type != JSON or CONTENT_TYPE in read):
        wanted[CONTENT_TYPE] = content_type  # a missing one reads as JSON: leave it missing
    wanted.update(message.headers)
    # A retry copy's due time is the caller's to add (extra), never the one read.
    kept = {name for name, value in wanted.items() if name != DUE and read.get(name) == value}
    headers: list[Any] = [entry for entry in native.headers if entry[0] in kept]
    headers.extend((name, value.encode()) for name, value in wanted.items() if name not in kept)
    key = message.key
    if key is None:
        return None, headers
    if native.key is not None and _text(native.key) == key:
        return native.key, headers
    return key.encode(), headers


def content_type_of(record: Any) -> str:
    """The content type ``from_record`` gives ``record``'s message, read without building
    the message (the consumer's hot path): the last one, JSON where it is missing or
    empty."""
    found = None
    for name, raw in record.headers:
        if name == CONTENT_TYPE:
            found = raw
    if not found:
        return JSON
    try:
        return found.decode() or JSON
    except UnicodeDecodeError:
        return _text(found) or JSON


def headers_of(record: Any, names: frozenset[str]) -> dict[str, str]:
    """``record``'s headers among ``names``, as ``from_record`` reads them into the
    message's headers (none of the bus's own), without building the message."""
    found: dict[str, str] = {}
    for name, raw in record.headers:
        if name in names and name not in _OWN:  # the last repeat of a name wins
            found[name] = _text(raw)
    return found


def due_of(record: Any) -> int | None:
    """When a retry-topic record is due (epoch ms), as ``from_record`` reads it."""
    found = None
    for name, raw in record.headers:
        if name == DUE:
            found = raw
    if found is None:
        return None
    due = _text(found)
    return int(due) if due.isdigit() else None


def from_record(record: Any) -> tuple[Message, int | None]:
    """The Message a consumed record carries, and its due time (epoch ms) if it has one.

    On every consumed record (the intake's hot path): UTF-8 values are decoded strictly
    (the cheapest call); a null value or one that is not UTF-8 sends the whole record down
    the tolerant path (``_text``)."""
    try:
        return _from_record(record, _utf8)
    except (TypeError, UnicodeDecodeError):
        return _from_record(record, _text)


def _from_record(record: Any, text: Callable[[Any], str]) -> tuple[Message, int | None]:
    message_id = correlation_id = reply_to = content_type = due = None
    headers: dict[str, str] = {}
    raw_headers = record.headers
    for name, raw in raw_headers:
        if name not in _OWN:  # the last repeat of a name wins
            headers[name] = text(raw)
        elif name == MESSAGE_ID:
            message_id = text(raw)
        elif name == CONTENT_TYPE:
            content_type = text(raw)
        elif name == CORRELATION_ID:
            correlation_id = text(raw)
        elif name == REPLY_TO:
            reply_to = text(raw)
        else:
            due = text(raw)
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
        native=record,
    )
    return message, int(due) if due and due.isdigit() else None


_utf8 = bytes.decode  # strict UTF-8: raises on a null value or bytes that are not UTF-8

"""Dead letters: the headers a parked message gets, and how one reads back."""

from __future__ import annotations

import os
import socket
import traceback
from datetime import UTC, datetime
from typing import Literal

import msgspec

from bus import message as m

Reason = Literal["failed", "rejected", "undecodable"]

MAX_EXCEPTION_MESSAGE = 1024
MAX_STACKTRACE = 8192
# Set once a dead letter has been made: replays keep these, later failures replace the rest.
_KEPT_ON_REPLAY = (m.DLQ_ORIGINAL_TOPIC, m.DLQ_CONSUMER_GROUP, m.DLQ_FIRST_FAILED_AT)
_HOST = f"{socket.gethostname()}:{os.getpid()}"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A parked message: its id, its headers (with the ``bus-dlq-*`` entries), its body."""

    message_id: str
    headers: dict[str, str]
    body: bytes

    @property
    def reason(self) -> str | None:
        return self.headers.get(m.DLQ_REASON)

    @property
    def exception_type(self) -> str | None:
        return self.headers.get(m.DLQ_EXCEPTION_TYPE)

    @property
    def exception_message(self) -> str | None:
        return self.headers.get(m.DLQ_EXCEPTION_MESSAGE)

    @property
    def attempts(self) -> int:
        return int(self.headers.get(m.DLQ_ATTEMPTS, "0"))


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot even say what it is: an
    error's own ``__str__`` failing must not keep its message from being settled."""
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type_name(exc)}>"


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def original_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` without the retry loop's bookkeeping."""
    if not m.RETRY_HEADERS.intersection(headers):
        return headers
    return {k: v for k, v in headers.items() if k not in m.RETRY_HEADERS}


def dead_letter_headers(
    message: m.Message,
    *,
    reason: Reason,
    exc: BaseException,
    topic: str,
    group: str,
    attempts: int,
) -> dict[str, str]:
    """The headers of ``message``'s dead letter: its original headers unchanged, plus the
    ``bus-dlq-*`` entries of DESIGN. A replayed letter keeps its original-* values."""
    now = now_rfc3339()
    out = original_headers(message.headers)
    out = {k: v for k, v in out.items() if not k.startswith(m.DLQ_PREFIX) or k in _KEPT_ON_REPLAY}
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # a broken __str__ breaks the formatter too
        stack = "".join(traceback.format_tb(exc.__traceback__)) + type_name(exc)
    out.setdefault(m.DLQ_ORIGINAL_TOPIC, topic)
    out.setdefault(m.DLQ_CONSUMER_GROUP, group)
    out.setdefault(m.DLQ_FIRST_FAILED_AT, message.headers.get(m.FIRST_FAILED_AT, now))
    out[m.DLQ_REASON] = reason
    out[m.DLQ_EXCEPTION_TYPE] = type_name(exc)
    out[m.DLQ_EXCEPTION_MESSAGE] = _clip(describe(exc), MAX_EXCEPTION_MESSAGE)
    out[m.DLQ_EXCEPTION_STACKTRACE] = _clip(stack, MAX_STACKTRACE)
    out[m.DLQ_ATTEMPTS] = str(attempts)
    out[m.DLQ_FAILED_AT] = now
    out[m.DLQ_HOST] = _HOST
    return out


def slim(headers: dict[str, str]) -> dict[str, str]:
    """Dead-letter ``headers`` cut down for a broker that refused them as too large: no
    stack trace, the exception message clipped to 128 bytes."""
    out = dict(headers)
    out[m.DLQ_EXCEPTION_STACKTRACE] = ""
    out[m.DLQ_EXCEPTION_MESSAGE] = _clip(out.get(m.DLQ_EXCEPTION_MESSAGE, ""), 128)
    return out


def retry_headers(message: m.Message, next_attempt: int) -> dict[str, str]:
    """The headers of the copy that will be attempt ``next_attempt``."""
    out = dict(message.headers)
    out[m.ATTEMPT] = str(next_attempt)
    out.setdefault(m.FIRST_FAILED_AT, now_rfc3339())
    return out

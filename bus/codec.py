"""msgspec encoding and decoding, with one encoder and one decoder cached per type.

The body is the payload alone: JSON by default, MessagePack when the content type says
so. ``bytes`` payloads pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec

from bus.errors import BusError, DecodeError
from bus.message import JSON, MSGPACK

Decode = Callable[[bytes], Any]

_ALIASES = {
    None: JSON,
    "": JSON,
    "application/json": JSON,
    "text/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,
    "application/vnd.msgpack": MSGPACK,
}
_json_encode = msgspec.json.Encoder().encode
_msgpack_encode = msgspec.msgpack.Encoder().encode


def normalize(content_type: str | None) -> str | None:
    """The canonical name of a content type, or None when the bus cannot decode it.

    Parameters such as ``; charset=utf-8`` are ignored.
    """
    if content_type in _ALIASES:  # the common case: one dict probe
        return _ALIASES[content_type]
    if content_type is not None:
        content_type = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(content_type)


def encode(payload: object, content_type: str = JSON) -> bytes:
    """The body for ``payload``: raw bytes as they are, anything else by content type."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    try:
        if content_type == JSON:
            return _json_encode(payload)
        if content_type == MSGPACK:
            return _msgpack_encode(payload)
    except (TypeError, msgspec.EncodeError) as exc:
        raise BusError(
            f"cannot encode {type(payload).__name__} as {content_type}: {exc}; "
            "publish a msgspec Struct, a type msgspec can encode, or raw bytes"
        ) from None
    raise BusError(f"unknown content type {content_type!r}: use {JSON!r} or {MSGPACK!r}")


@cache
def decoder(payload_type: Any, content_type: str) -> Decode:
    """A function decoding a body of ``content_type`` into ``payload_type``; cached."""
    if payload_type is bytes:
        return bytes
    if content_type == JSON:
        dec: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] = msgspec.json.Decoder(
            payload_type
        )
    elif content_type == MSGPACK:
        dec = msgspec.msgpack.Decoder(payload_type)
    else:
        raise BusError(f"unknown content type {content_type!r}")
    return dec.decode


def decode(body: bytes, payload_type: Any, content_type: str | None) -> Any:
    """Decode ``body``; raise DecodeError saying what was wrong. A ``bytes`` handler
    takes any body, whatever its content type."""
    if payload_type is bytes:
        return body
    canonical = normalize(content_type)
    if canonical is None:
        raise DecodeError(
            f"cannot decode content type {content_type!r}; the bus reads JSON or msgpack"
        )
    try:
        return decoder(payload_type, canonical)(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        name = getattr(payload_type, "__name__", repr(payload_type))
        raise DecodeError(f"body is not a valid {name} ({canonical}): {exc}") from None

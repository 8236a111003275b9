"""AMQP header tables written back with the values they were read with.

A copy of a delivered message (retry, dead letter, replay, a return) starts from the
properties the broker delivered (``Message.native``). pamqp decodes every table value to
a Python value and encodes most back to the same AMQP value, but not all: a double
(``d``) goes back as a 32-bit float, losing precision, and a long string that was not
UTF-8 comes back as ``bytes``, which pamqp refuses to encode. ``CopyProperties`` encodes
its headers table with those two written back as they came and leaves the rest to pamqp.
Integers keep their value and sign, but their width on the wire is pamqp's choice (the
smallest that holds the value), and a 32-bit float comes back as a double of the same
value: the decoded value no longer says which width it had.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pamqp import encode
from pamqp.commands import Basic

_LENGTH = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")


class CopyProperties(Basic.Properties):
    """Basic.Properties whose headers table is encoded by ``table`` below.

    No ``__slots__`` here on purpose: pamqp's marshal walks ``self.__slots__``, which
    must stay the parent's list of properties."""

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return table(value)
        return super().encode_property(name, value)


def table(value: Mapping[str, Any]) -> bytes:
    """An AMQP field table holding ``value``."""
    parts = []
    for key, item in value.items():
        parts.append(encode.short_string(key))
        parts.append(_value(item))
    data = b"".join(parts)
    return _LENGTH.pack(len(data)) + data


def _value(value: Any) -> bytes:
    if isinstance(value, bytes):  # a long string pamqp could not decode as UTF-8
        return b"S" + _LENGTH.pack(len(value)) + value
    if isinstance(value, float):  # pamqp would narrow it to 32 bits
        return b"d" + _DOUBLE.pack(value)
    if isinstance(value, dict):
        return b"F" + table(value)
    if isinstance(value, list):
        items = b"".join(_value(item) for item in value)
        return b"A" + _LENGTH.pack(len(items)) + items
    return encode.encode_table_value(value)

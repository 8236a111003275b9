"""Property tests: any Struct survives the wire in both encodings; raw bytes pass as-is."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bus
from bus import codec
from bus.message import JSON, MSGPACK

FIELD_TYPES: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    str: st.text(),
    float: st.floats(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
    bytes: st.binary(),
    list[int]: st.lists(st.integers(min_value=-(2**31), max_value=2**31)),
    dict[str, str]: st.dictionaries(st.text(), st.text(), max_size=5),
    str | None: st.none() | st.text(),
}


@st.composite
def struct_values(draw: st.DrawFn) -> msgspec.Struct:
    types = draw(st.lists(st.sampled_from(list(FIELD_TYPES)), min_size=0, max_size=6))
    fields = [(f"f{i}", t) for i, t in enumerate(types)]
    cls = msgspec.defstruct(f"S{len(fields)}", fields)
    values = {name: draw(FIELD_TYPES[t]) for name, t in fields}
    return cls(**values)  # type: ignore[no-any-return]


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
@given(value=struct_values())
def test_any_struct_round_trips(content_type: str, value: msgspec.Struct) -> None:
    body = codec.encode(value, content_type)
    assert codec.decode(body, type(value), content_type) == value


@given(raw=st.binary())
def test_raw_bytes_pass_untouched(raw: bytes) -> None:
    assert codec.encode(raw) == raw
    assert codec.decode(raw, bytes, "application/octet-stream") == raw
    assert codec.decoder(bytes, JSON)(raw) == raw


@given(garbage=st.binary())
def test_garbage_never_escapes_as_anything_but_decode_error(garbage: bytes) -> None:
    class Target(msgspec.Struct):
        n: int

    try:
        decoded = codec.decode(garbage, Target, JSON)
    except bus.DecodeError as exc:
        assert "not a valid Target" in str(exc)
    else:  # the rare garbage that is valid JSON of the right shape
        assert isinstance(decoded, Target)


def test_decoders_are_cached_per_type() -> None:
    class A(msgspec.Struct):
        n: int

    assert codec.decoder(A, JSON) is codec.decoder(A, JSON)


def test_content_type_parameters_and_unknown_types() -> None:
    assert codec.normalize("application/json; charset=utf-8") == JSON
    assert codec.normalize(None) == JSON
    with pytest.raises(bus.DecodeError, match="text/csv"):
        codec.decode(b"1", int, "text/csv")

"""``payloads(Type)``: a Hypothesis strategy for any payload type msgspec can decode, a
Struct above all, honouring its constraints (``Annotated[int, msgspec.Meta(ge=1)]``,
lengths, patterns, literals, optional fields), so a handler can be fuzzed with every
value a publisher could legally send:

    from hypothesis import given
    from bus.testing import payloads

    @given(payloads(OrderPlaced))
    def test_total_is_never_negative(event: OrderPlaced) -> None: ...

Every value it draws encodes and decodes back to itself. Hypothesis is imported on the
first call: install it with ``pip install 'bus[testing]'``.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import msgspec.inspect as mi

from bus.errors import ConfigError

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy


def payloads(payload_type: Any) -> SearchStrategy[Any]:
    """A strategy drawing valid values of ``payload_type`` (see the module)."""
    try:
        from hypothesis import strategies  # noqa: F401
    except ImportError:
        raise ConfigError(
            "bus.testing.payloads needs Hypothesis: pip install 'bus[testing]' "
            "(or pip install hypothesis)"
        ) from None
    return _strategy(mi.type_info(payload_type), set())


def _strategy(t: mi.Type, seen: set[type]) -> SearchStrategy[Any]:
    from hypothesis import strategies as st

    if isinstance(t, mi.StructType | mi.DataclassType):
        if t.cls in seen:  # a recursive type: stop the recursion with its defaults
            raise ConfigError(f"payloads() cannot draw the recursive type {t.cls.__qualname__}")
        inner = seen | {t.cls}
        required = {f.name: _strategy(f.type, inner) for f in t.fields if f.required}
        optional = {f.name: _strategy(f.type, inner) for f in t.fields if not f.required}
        return st.builds(t.cls, **required, **optional)
    if isinstance(t, mi.IntType):
        low, high = _bounds(t.ge, t.gt, t.le, t.lt, 1)
        # msgspec holds integers in 64 bits
        ints = st.integers(-(2**63) if low is None else low, 2**63 - 1 if high is None else high)
        step = t.multiple_of
        return (
            ints.map(lambda n: n - n % step).filter(lambda n: low is None or n >= low)
            if step
            else ints
        )
    if isinstance(t, mi.FloatType):
        low_f = t.ge if t.ge is not None else t.gt
        high_f = t.le if t.le is not None else t.lt
        return st.floats(
            low_f, high_f, exclude_min=t.gt is not None, exclude_max=t.lt is not None,
            allow_nan=False, allow_infinity=False,
        )  # fmt: skip
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return st.from_regex(t.pattern, fullmatch=True).filter(
                lambda s: (t.min_length or 0) <= len(s) <= (t.max_length or len(s))
            )
        return st.text(min_size=t.min_length or 0, max_size=t.max_length)
    if isinstance(t, mi.BytesType | mi.ByteArrayType | mi.MemoryViewType):
        return st.binary(min_size=t.min_length or 0, max_size=t.max_length)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.AnyType):
        return st.none() | st.booleans() | st.integers() | st.text()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.UnionType):
        return st.one_of([_strategy(u, seen) for u in t.types])
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        items = st.lists(
            _strategy(t.item_type, seen),
            min_size=t.min_length or 0,
            max_size=t.max_length if t.max_length is not None else 5,
            unique=not isinstance(t, mi.ListType | mi.VarTupleType),
        )
        kind = {mi.ListType: list, mi.SetType: set, mi.FrozenSetType: frozenset}
        return items.map(kind.get(type(t), tuple))
    if isinstance(t, mi.TupleType):
        return st.tuples(*(_strategy(i, seen) for i in t.item_types))
    if isinstance(t, mi.DictType):
        return st.dictionaries(
            _strategy(t.key_type, seen),
            _strategy(t.value_type, seen),
            min_size=t.min_length or 0,
            max_size=t.max_length if t.max_length is not None else 5,
        )
    if isinstance(t, mi.DateTimeType):
        if t.tz:
            return st.datetimes(timezones=st.just(datetime.UTC))
        return st.datetimes()
    if isinstance(t, mi.DateType):
        return st.dates()
    if isinstance(t, mi.TimeType):
        return st.times()
    if isinstance(t, mi.TimeDeltaType):
        return st.timedeltas()
    if isinstance(t, mi.UUIDType):
        return st.uuids()
    if isinstance(t, mi.DecimalType):
        return st.decimals(allow_nan=False, allow_infinity=False)
    raise ConfigError(
        f"payloads() cannot draw {t!r}; build a strategy for it with hypothesis.strategies"
    )


def _bounds(
    ge: int | None, gt: int | None, le: int | None, lt: int | None, step: int
) -> tuple[int | None, int | None]:
    low = ge if ge is not None else (gt + step if gt is not None else None)
    high = le if le is not None else (lt - step if lt is not None else None)
    return low, high


__all__ = ["payloads"]

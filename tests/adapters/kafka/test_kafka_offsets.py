"""The offset tracker commits only what is settled, whatever order handlers finish in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.kafka.offsets import PartitionOffsets


def test_position_waits_for_the_oldest_unsettled() -> None:
    offsets = PartitionOffsets()
    assert offsets.position is None
    for o in (5, 6, 8, 9):  # a gap at 7 (compaction, transaction markers)
        offsets.take(o)
    assert offsets.position == 5
    offsets.settle(6)
    offsets.settle(9)
    assert offsets.position == 5
    offsets.settle(5)
    assert offsets.position == 8
    offsets.settle(8)
    assert offsets.position == 10
    assert offsets.unsettled == 0
    offsets.settle(8)  # settling twice changes nothing
    assert offsets.position == 10


def test_taking_backwards_is_refused() -> None:
    offsets = PartitionOffsets()
    offsets.take(3)
    with pytest.raises(ValueError):
        offsets.take(3)


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with gaps, and the order in which some of them settle."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    offsets, o = [], draw(st.integers(0, 1000))
    for gap in gaps:
        offsets.append(o)
        o += gap
    settled = draw(st.permutations(offsets))
    cut = draw(st.integers(0, len(settled)))
    return offsets, list(settled[:cut])


@given(runs(), st.data())
def test_never_commits_past_an_unsettled_record(
    run: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    taken, settle_order = run
    offsets = PartitionOffsets()
    # Interleave: every settle happens after its take.
    pending_takes = list(taken)
    done: set[int] = set()
    settle_iter = iter(settle_order)
    next_settle = next(settle_iter, None)
    taken_so_far: list[int] = []
    while pending_takes or next_settle is not None:
        can_settle = next_settle is not None and next_settle in taken_so_far
        if pending_takes and (not can_settle or data.draw(st.booleans())):
            o = pending_takes.pop(0)
            offsets.take(o)
            taken_so_far.append(o)
        else:
            assert next_settle is not None
            offsets.settle(next_settle)
            done.add(next_settle)
            next_settle = next(settle_iter, None)
        unsettled = [o for o in taken_so_far if o not in done]
        expected = min(unsettled) if unsettled else taken_so_far[-1] + 1
        assert offsets.position == expected
        assert offsets.unsettled == len(unsettled)

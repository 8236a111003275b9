"""What may be committed for one partition: the offset below which all is settled.

Records are taken in offset order (possibly with gaps) and settled in any order. The
committable position is the lowest offset taken and not yet settled, or one past the
highest taken when all are settled. A record still being handled is never passed.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offset bookkeeping of one assigned partition."""

    __slots__ = ("_done", "_next", "_open")

    def __init__(self) -> None:
        self._open: deque[int] = deque()  # taken, oldest first, head not yet settled
        self._done: set[int] = set()  # settled but behind an unsettled one
        self._next: int | None = None

    def take(self, offset: int) -> None:
        """Record ``offset`` as read; offsets must be taken in increasing order."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} taken after {self._next - 1}")
        self._open.append(offset)
        self._next = offset + 1

    def take_all(self, offsets: list[int]) -> None:
        """``take`` each of ``offsets`` (increasing, as one fetch returns them)."""
        if not offsets:
            return
        if self._next is not None and offsets[0] < self._next:
            raise ValueError(f"offset {offsets[0]} taken after {self._next - 1}")
        self._open.extend(offsets)
        self._next = offsets[-1] + 1

    def settle(self, offset: int) -> None:
        """Record ``offset`` as handled (acked, retried or dead-lettered)."""
        taken = self._open
        if not taken:
            return  # already settled
        first = taken[0]
        if offset == first:
            taken.popleft()
            done = self._done
            if done:
                while taken and taken[0] in done:
                    done.discard(taken.popleft())
        elif offset > first:
            self._done.add(offset)
        # else: below the head, already settled

    @property
    def position(self) -> int | None:
        """The offset to commit (the next one to read on restart), None before any take."""
        if self._open:
            return self._open[0]
        return self._next

    @property
    def unsettled(self) -> int:
        return len(self._open) - len(self._done)

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

    def settle(self, offset: int) -> None:
        """Record ``offset`` as handled (acked, retried or dead-lettered)."""
        if not self._open or offset < self._open[0]:
            return  # already settled
        if offset == self._open[0]:
            self._open.popleft()
            while self._open and self._open[0] in self._done:
                self._done.discard(self._open.popleft())
        else:
            self._done.add(offset)

    @property
    def position(self) -> int | None:
        """The offset to commit (the next one to read on restart), None before any take."""
        if self._open:
            return self._open[0]
        return self._next

    @property
    def unsettled(self) -> int:
        return len(self._open) - len(self._done)

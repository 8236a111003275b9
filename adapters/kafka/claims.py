"""Keeping each partition's handed-out mark (marks.py) ahead of what is handed out.

A mark is claimed a stride past what was fetched, for every partition at once: on
assignment, and again in the background once a batch comes within half a stride of it,
so a batch seldom waits on a commit (an awaited commit per batch, ~0.2 ms of CPU and a
round trip, ~3 ms on a busy loop, cost 10-40% of consume throughput).

The stride is two read-ahead windows, grown while claims keep coming faster than one
every ``CLAIM_GAP`` (doubling, up to ``MAX_GROWTH`` times) and halved once they come
slower than one every ``SLOW_GAP``. Each claim is a commit of ~0.35 ms of CPU, and
aiokafka hands out one partition's records at a time, so at a fixed stride of 1,000 a
member consuming 130k records a second claimed ~90 times per 50,000 records: about 8% of
its CPU. Grown, a busy member claims at most about twenty times a second. The price is
paid only after it dies: what it would have handled in the next 0.1-0.2 s counts as
redelivered (marks.py). Leaving cleanly, a member lowers each mark to what it really
handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from aiokafka import TopicPartition

from adapters.kafka.marks import Marks
from adapters.kafka.partition import Partition

LEARN_TIMEOUT = 5.0  # seconds an assignment may spend reading marks and start offsets
CLAIM_GAP = 0.05  # seconds: claims coming closer than this grow the stride
SLOW_GAP = 4 * CLAIM_GAP  # seconds: claims coming further apart than this shrink it
MAX_GROWTH = 64  # the stride grows to at most this many times its base


class Claims:
    def __init__(self, marks: Marks, parts: dict[TopicPartition, Partition], stride: int) -> None:
        self.marks = marks
        self._parts = parts  # the member's assignment, kept by the member
        # Two read-ahead windows at the least: a claim started half way (one window before
        # it is needed) lands in time even in a burst on a busy loop.
        self._base = self._stride = stride
        self._last = -float("inf")  # when the last claim started (the loop's clock)
        self._fast = False  # it came within CLAIM_GAP of the one before
        self._claiming: asyncio.Task[None] | None = None
        self.stopped = False
        """No claim any more: the final marks are being (or were) written."""

    async def before_handout(self, batches: Mapping[TopicPartition, Sequence[object]]) -> None:
        """Learn the marks of newly read partitions, then make sure the marks this batch
        needs are committed before any of its records is handed out."""
        parts = self._parts
        unknown = [tp for tp in batches if tp in parts and not parts[tp].known]
        if unknown:
            self.know(await self.marks.read(unknown))
        stride = self._stride
        needed = soon = False
        for tp, records in batches.items():
            part = parts.get(tp)
            if part is not None and records:
                end: int = records[-1].offset + 1  # type: ignore[attr-defined]
                if end > part.fetched:
                    part.fetched = end
                if end > part.mark:
                    needed = True
                elif end + stride // 2 > part.mark:
                    soon = True
        if needed:
            await self._claimed()  # the claim in flight may cover this batch already
            if any(
                (part := parts.get(tp)) is not None and part.fetched > part.mark for tp in batches
            ):
                self._start()
                await self._claimed()
        elif soon and self._claiming is None:
            self._start()

    def know(
        self, marks: dict[TopicPartition, int], starts: dict[TopicPartition, int] | None = None
    ) -> None:
        """Take the marks read for partitions not yet known (and, from an assignment,
        where their fetching starts); a partition known meanwhile keeps what it has."""
        for tp, mark in marks.items():
            part = self._parts.get(tp)
            if part is None or part.known:
                continue  # revoked again, or learnt the other way first
            part.known, part.redone, part.mark = True, mark, mark
            start = (starts or {}).get(tp, 0)
            if start > part.fetched:
                part.fetched = start

    async def learn(
        self, new: list[TopicPartition], position: Callable[[TopicPartition], Awaitable[int]]
    ) -> None:
        """Read newly assigned partitions' marks and where their fetching starts, then
        claim a window past that on all of them at once, so no partition's first batch
        waits on a commit of its own. Best effort and bounded: ``before_handout`` learns
        what this misses."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEARN_TIMEOUT):
                marks = await self.marks.read(new)
                starts = await asyncio.gather(*(position(tp) for tp in new), return_exceptions=True)
                self.know(
                    marks,
                    {tp: s for tp, s in zip(new, starts, strict=True) if isinstance(s, int)},
                )
                if self._claiming is None:
                    self._start()

    def _start(self) -> None:
        """Claim a window past what was fetched on every partition, in a task of its own
        (the one ``_claimed`` waits for, so a member leaving always commits its final
        marks after every claim)."""
        if self.stopped:
            return  # a claim now would undo the final marks
        now = asyncio.get_running_loop().time()
        gap, self._last = now - self._last, now
        fast, self._fast = self._fast, gap < CLAIM_GAP
        if fast and self._fast:  # sustained: not the first batch after an assignment
            self._stride = min(self._stride * 2, self._base * MAX_GROWTH)
        elif gap > SLOW_GAP:
            self._stride = max(self._base, self._stride // 2)
        stride = self._stride
        marks = {
            tp: part.fetched + stride
            for tp, part in self._parts.items()
            if part.known and part.fetched + stride > part.mark
        }
        task = asyncio.get_running_loop().create_task(self._claim(marks))
        self._claiming = task
        task.add_done_callback(self._claim_done)

    async def _claim(self, marks: dict[TopicPartition, int]) -> None:
        if await self.marks.commit(marks):
            for tp, mark in marks.items():
                if (part := self._parts.get(tp)) is not None:
                    part.mark = max(part.mark, mark)

    def _claim_done(self, task: asyncio.Task[None]) -> None:
        if self._claiming is task:
            self._claiming = None

    async def _claimed(self) -> None:
        """Wait for the background claim, if one is in flight (whatever its end)."""
        task = self._claiming
        if task is not None and not task.done():
            await asyncio.wait([task])

    async def lower(self, parts: Iterable[Partition]) -> None:
        """Leaving cleanly: lower each mark to what was really handed out (and what an
        earlier owner had), so what was only read ahead, and the window claimed ahead,
        are not counted as delivered."""
        await self._claimed()  # lands before the final marks: one connection, in order
        marks: dict[TopicPartition, int] = {}
        for part in parts:
            if not part.known:
                continue  # its marks were never read, so never claimed either
            position = part.offsets.position  # None: nothing fetched since the start
            final = max(
                part.fetched if position is None else position, part.handed + 1, part.redone
            )
            if final != part.mark:
                marks[part.tp] = final
        await self.marks.commit(marks)

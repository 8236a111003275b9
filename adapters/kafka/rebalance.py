"""What a member does when its group moves partitions.

On revocation the partition's records not yet handed out are dropped, and the rebalance
waits until its handed-out records are settled (the rest of the group waits too), so no
two members handle one record at once; then what is settled is committed and the marks
lowered to what was handed out, unless the group dropped this member meanwhile (a
broker restarted empty forgets every group): then nothing is written, the next owner
handles again what was not committed, counted as redelivered, and the member makes its
topics again (``on_dropped``: the broker may have lost them). The group waits for a
member up to its rebalance timeout, ``max_poll_interval_ms`` (as in Kafka's Java
client): past it the member would be dropped from the group, so the wait ends a little
before, with a warning, and the handlers still running then share their records with the
next owner. Closing ends the wait at once and leaves what is unsettled to the next owner.

Meanwhile the member keeps polling (pauses.py), so aiokafka never drops it for being idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRebalanceListener, TopicPartition

from adapters.kafka.claims import Claims
from adapters.kafka.commits import Commits
from adapters.kafka.partition import Partition
from adapters.kafka.pauses import Pauses
from adapters.kafka.readahead import ReadAhead
from adapters.kafka.timers import Timers

log = logging.getLogger("bus.kafka")


def revoke_bound(max_poll_interval_ms: int) -> float:
    """How long a revocation may wait on handlers: the rebalance timeout, less a margin
    for the commits that follow and the join itself."""
    interval = max_poll_interval_ms / 1000
    return max(0.0, interval - min(5.0, interval / 4))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        parts: dict[TopicPartition, Partition],
        *,
        ahead: ReadAhead,
        timers: Timers,
        pauses: Pauses,
        commits: Commits,
        claims: Claims,
        position: Callable[[TopicPartition], Awaitable[int]],
        wait_bound: float,
        on_dropped: Callable[[], None],
    ) -> None:
        self._parts = parts  # the member's assignment, kept here
        self._ahead = ahead
        self._timers = timers
        self._pauses = pauses
        self._commits = commits
        self._claims = claims
        self._position = position
        self._wait_bound = wait_bound
        self._on_dropped = on_dropped
        self.closing = False
        self.settled = asyncio.Event()
        """Set by the member when a partition's last handed-out record is settled."""
        self.assigned = asyncio.Event()
        """Set once this member was first given partitions (tests wait on it)."""
        self.revoking = asyncio.Event()
        """Set while a revocation waits on handed-out records (tests wait on it)."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        gone = [self._parts.pop(tp) for tp in revoked if tp in self._parts]
        for part in gone:
            part.owned = False
        self._timers.drop(gone)
        self._ahead.drop(part.tp for part in gone)
        if gone and not self._commits.in_group():
            self._on_dropped()
        await self._wait_settled(gone)
        await self._commits.commit(gone)  # not if dropped from the group (commits.py)
        if self._commits.in_group():
            await self._claims.lower(gone)
        self._claims.marks.own(self._parts)
        for part in gone:
            part.live = False

    async def _wait_settled(self, gone: list[Partition]) -> None:
        if not any(part.held for part in gone):
            return
        self.revoking.set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._wait_bound):
                    while not self.closing and any(part.held for part in gone):
                        self.settled.clear()
                        await self.settled.wait()
                    return
            held = sum(part.held for part in gone)
            log.warning(
                "%d record(s) of revoked partitions still being handled after %.0f s: "
                "letting them go before the group drops this member; their next owner "
                "handles them again (raise max_poll_interval_ms above the slowest handler)",
                held,
                self._wait_bound,
            )
        finally:
            self.revoking.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.closing:
            return  # a join that completed while closing: the final marks are written
        new = [tp for tp in assigned if tp not in self._parts]
        for tp in new:
            self._parts[tp] = Partition(tp)
        self._claims.marks.own(self._parts)
        self._pauses.apply()  # a new assignment starts unpaused
        self.assigned.set()
        self._ahead.wake(len(self._ahead))  # held back while this member was out
        if new:
            await self._claims.learn(new, self._position)

"""Committing what is settled: per partition, the offset below which every record was
acked, retried or dead-lettered (offsets.py), so a record still being handled is never
passed. Every ``commit_interval_ms`` while something settled, on revocation and on close.

Nothing is committed while the member is out of its group (``in_group`` false: aiokafka
reset its generation after the group forgot it, as a broker restarted empty does): such
a commit goes out as a group-less one, which a broker takes for an empty group, and
would set positions from before the restart over the new, empty log, so the records
published since would be skipped. The next owner handles what was not committed again.

A commit is given up after ``bound`` seconds (the session timeout): aiokafka retries a
retriable error for ever (UnknownTopicOrPartition from a broker that lost the topic),
which would hold a revocation, and so the member's rejoin, for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.config import KafkaConfig
from adapters.kafka.partition import Partition

log = logging.getLogger("bus.kafka")


def commit_bound(config: KafkaConfig) -> float:
    """Seconds a commit may take before it is given up: the session timeout (a member
    whose broker has not answered for that long is out of its group anyway)."""
    return max(0.5, config.session_timeout_ms / 1000)


class Commits:
    def __init__(
        self,
        client: AIOKafkaConsumer,
        interval_ms: int,
        topic: str,
        *,
        bound: float,
        in_group: Callable[[], bool],
    ) -> None:
        self._client = client
        self._interval = interval_ms / 1000
        self._bound = bound
        self.in_group = in_group
        self._topic = topic  # for log lines
        self.dirty = False
        """Something settled since the last commit."""

    async def run(self, parts: Callable[[], Iterable[Partition]]) -> None:
        """Commit the assigned ``parts()`` periodically, while something settled."""
        while True:
            await asyncio.sleep(self._interval)
            if self.dirty:
                await self.commit(parts())

    async def commit(self, parts: Iterable[Partition]) -> None:
        """Commit, for each of ``parts``, the offset below which all is settled."""
        parts = list(parts)
        self.dirty = False
        offsets: dict[TopicPartition, int] = {}
        for part in parts:
            position = part.offsets.position
            if position is not None and position > part.committed:
                offsets[part.tp] = position
        if not offsets:
            return
        if not self.in_group():
            log.info(
                "%s: not committing %d partition(s): this member is out of its group "
                "(the next owner handles what was not committed again)",
                self._topic,
                len(offsets),
            )
            return
        try:
            async with asyncio.timeout(self._bound):
                await self._client.commit(offsets)
        except Exception as exc:  # a rebalance in progress, the broker gone or restarted
            # empty (TimeoutError): next time, or the next owner
            self.dirty = True
            log.debug("commit on %s deferred: %r", self._topic, exc)
            return
        for part in parts:
            part.committed = max(part.committed, offsets.get(part.tp, -1))

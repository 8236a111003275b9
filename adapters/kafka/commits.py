"""Committing what is settled: per partition, the offset below which every record was
acked, retried or dead-lettered (offsets.py), so a record still being handled is never
passed. Every ``commit_interval_ms`` while something settled, on revocation and on close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.partition import Partition

log = logging.getLogger("bus.kafka")


class Commits:
    def __init__(self, client: AIOKafkaConsumer, interval_ms: int, topic: str) -> None:
        self._client = client
        self._interval = interval_ms / 1000
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
        try:
            await self._client.commit(offsets)
        except Exception as exc:  # a rebalance in progress: next time, or the next owner
            self.dirty = True
            log.debug("commit on %s deferred: %s", self._topic, exc)
            return
        for part in parts:
            part.committed = max(part.committed, offsets.get(part.tp, -1))

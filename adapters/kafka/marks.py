"""Handed-out marks: how a Kafka member tells its successor which records were read.

Kafka does not count how often a record was read, so a member that dies holding records
would pass them on looking new. Before a fetched batch is handed out, the member makes
sure that, per partition, a "mark" past the batch's last offset is committed in a shadow
consumer group of its own (``<group>:<topic>:marks``, which nobody joins). A new owner
reads the marks before it hands out a partition's records: records below the mark may
have been read by an earlier owner that did not commit them, so they are redeliveries
(counted 1, however often: like RabbitMQ's redelivered flag, unlike a quorum queue's).

A mark is claimed a stride past what was fetched, for all of a member's partitions in
one commit: on assignment (from where fetching starts), and again in the background once
a batch comes within half a stride of it, so a batch seldom waits (claims.py). The
stride is two read-ahead windows (``read_ahead``), grown for a busy member to what it
handles in 0.1-0.2 s, so claims cost little CPU. The price is paid only after a member
dies: what it read ahead and had not handed out, and up to a stride after that, count
as redelivered once, as RabbitMQ counts a message prefetched by a consumer that died. A
member leaving cleanly (close or revocation) lowers its marks to what it really handed
out, so nothing it merely read ahead, or claimed ahead, is counted.

Offsets carry the marks, not commit metadata: tansu drops metadata (see
tests/adapters/kafka/test_tansu_differences.py). A failed mark commit is logged and the
batch is handed out anyway: counting is never worth stopping consumption for. A mark
commit is given up after the session timeout (commits.py says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import tenacity
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from adapters.kafka.commits import commit_bound
from adapters.kafka.config import KafkaConfig

log = logging.getLogger("bus.kafka")


def marks_group(group_id: str) -> str:
    """The shadow consumer group holding the marks of the Kafka group ``group_id``
    (``<group>:<topic>``, see consumer.py): no topic has a ':', so no subscription's own
    group is ever named like this."""
    return f"{group_id}:marks"


class Marks:
    """The marks of one member's partitions, read and committed through a client of the
    shadow group (assigned, never fetching: its partitions are paused)."""

    def __init__(self, config: KafkaConfig, group_id: str) -> None:
        self._client = AIOKafkaConsumer(
            **config.client_options(),
            group_id=marks_group(group_id),
            enable_auto_commit=False,
        )
        self._owned: frozenset[TopicPartition] = frozenset()
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._failing = False
        self._bound = commit_bound(config)

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        await self._client.stop()

    def own(self, partitions: Iterable[TopicPartition]) -> None:
        """Track the member's assignment: a commit may name only owned partitions, and
        aiokafka commits only for assigned ones. The client's assignment only grows: an
        assign() while the client looks for its coordinator (a broker restarting) kills
        aiokafka's coordination task ("assert assignment is not None and
        assignment.active"), so it is called only for partitions never assigned before."""
        owned = frozenset(partitions)
        self._owned = owned
        if owned <= self._assigned:
            return
        self._assigned |= owned
        try:
            self._client.assign(list(self._assigned))
            self._client.pause(*self._assigned)  # never fetch through this client
        except Exception as exc:  # stopped while the member was closing: nothing to mark
            log.debug("handed-out marks: assignment not followed: %s", exc)

    async def read(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's mark, 0 where none was ever committed."""
        tps = list(partitions)
        found = await asyncio.gather(*(self._read_one(tp) for tp in tps), return_exceptions=True)
        marks: dict[TopicPartition, int] = {}
        for tp, mark in zip(tps, found, strict=True):
            if isinstance(mark, BaseException):
                log.warning("could not read the handed-out mark of %s: %s", tp, mark)
                mark = None
            marks[tp] = mark if isinstance(mark, int) else 0
        return marks

    async def _read_one(self, tp: TopicPartition) -> int | None:
        async for attempt in _retrying():
            with attempt:
                mark: int | None = await self._client.committed(tp)
                return mark
        return None  # not reached: the last failure is raised

    async def commit(self, marks: dict[TopicPartition, int]) -> bool:
        """Commit ``marks`` (owned partitions only); False, logged, if the broker did not."""
        marks = {tp: mark for tp, mark in marks.items() if tp in self._owned}
        if not marks:
            return True
        try:
            async with asyncio.timeout(self._bound):
                async for attempt in _retrying():
                    with attempt:
                        await self._client.commit(marks)
        except Exception as exc:
            if not self._failing:  # once per run of failures, not per batch
                log.warning(
                    "handed-out marks not committed (%r): a redelivery after a crash may "
                    "not raise the attempt count",
                    exc,
                )
            self._failing = True
            return False
        self._failing = False
        return True


def _retrying() -> tenacity.AsyncRetrying:
    """A few quick tries on a retriable broker error (the shadow group's coordinator
    still being found, or moving): a mark not committed is a redelivery not counted."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
        ),
        reraise=True,
    )

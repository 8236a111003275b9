"""What a member knows of one partition it was assigned, and a record read from it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.kafka.offsets import PartitionOffsets


class Partition:
    """One assignment of one partition to this member.

    ``owned`` until its revocation starts: its records may be handed out. ``live`` until
    the revocation ends: settling a record still counts (and is committed).
    """

    __slots__ = (
        "committed",
        "fetched",
        "handed",
        "held",
        "known",
        "live",
        "mark",
        "offsets",
        "owned",
        "redone",
        "timers",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.owned = True
        self.live = True
        self.offsets = PartitionOffsets()
        self.held = 0  # handed out, not settled
        self.committed = -1
        # records waiting in memory (timers.py): offset -> (timer, a retry record?)
        self.timers: dict[int, tuple[asyncio.TimerHandle, bool]] = {}
        self.known = False  # the marks below were read (before the first record is)
        self.redone = 0  # records below this offset were read by an earlier owner
        self.mark = 0  # the handed-out mark committed for this partition
        self.handed = -1  # the highest offset handed out by this member
        self.fetched = 0  # one past the highest offset fetched


Item = tuple[Partition, int, ConsumerRecord[Any, Any], int]
"""A record read and not yet handed out: partition, offset, the record (its message is
built when first asked: delivery.py), and how often this member gave it back already."""

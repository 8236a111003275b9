"""Browsing and replaying a group's dead letters.

What was replayed is remembered as the committed offset of the consumer group
``<group>.dlq-replay`` on the dead-letter topic: browsing starts there, a replay moves
what lies between there and the end and then commits the end, so a second replay moves
nothing twice. Both read with manual assignment (no group join).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.config import KafkaConfig

log = logging.getLogger("bus.kafka")

DLQ_PARTITION = 0  # dead-letter topics have one partition
STALL = 5.0
"""Seconds of fetching without progress after which a browse ends short of the end."""
FETCH_WAIT = 0.5
"""The longest one fetch waits, so a position moved without records is soon seen."""


def _reader(config: KafkaConfig, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **config.client_options(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=config.fetch_max_wait_ms,
    )


def unreplayed(config: KafkaConfig, dlq: str, group: str) -> AsyncGenerator[Any, None]:
    """Every record of ``dlq`` present now and not yet replayed for ``group``, in order."""
    return _records(config, dlq, group, commit=False)


def replayed(config: KafkaConfig, dlq: str, group: str) -> AsyncGenerator[Any, None]:
    """Like ``unreplayed``; once the caller has iterated to the end, every record yielded
    is marked replayed. A caller that stops early, or fails, marks none."""
    return _records(config, dlq, group, commit=True)


async def _records(
    config: KafkaConfig, dlq: str, group: str, *, commit: bool
) -> AsyncGenerator[Any, None]:
    """The records from the committed offset up to the end offset read at the start.

    Progress is the consumer's position, not the offsets of records seen: offsets holding
    no record (removed by retention, transaction markers) move it too. Fetching that makes
    no progress for ``STALL`` seconds in all ends the browse (logged), so it always ends:
    what was reached only rises, to the end at most, and every fetch is bounded in time.
    A replay marks what was reached, never more: letters not read stay unreplayed.
    """
    tp = TopicPartition(dlq, DLQ_PARTITION)
    client = _reader(config, group)
    await client.start()
    try:
        client.assign([tp])
        end = (await client.end_offsets([tp]))[tp]
        # Offset 0 when nothing was replayed: if retention removed it, the reset
        # policy (earliest) moves on to the first record still there.
        start = await client.committed(tp) or 0
        if start >= end:
            return
        client.seek(tp, start)
        reached = start  # every offset below was yielded or holds no record
        stalled = 0.0  # seconds spent fetching since the last progress
        while reached < end:
            if stalled >= STALL:
                log.warning(
                    "browsing dead letters on %s stopped at offset %d of %d: nothing came "
                    "for %.0f s (letters removed, or the broker is slow)",
                    dlq, reached, end, STALL,
                )  # fmt: skip
                break
            began = time.monotonic()
            fetched = await _fetch(client, tp, STALL - stalled)
            if fetched is None:
                stalled = STALL
                continue
            records, position = fetched
            before = reached
            for record in records:
                if record.offset >= end:
                    break
                if record.offset >= reached:  # never twice, should the position go back
                    yield record
                    reached = record.offset + 1
            reached = max(reached, min(position, end))
            stalled = 0.0 if reached > before else stalled + time.monotonic() - began
        if commit and reached > start:
            await client.commit({tp: reached})
    finally:
        await client.stop()


async def _fetch(
    client: AIOKafkaConsumer, tp: TopicPartition, seconds: float
) -> tuple[list[Any], int] | None:
    """What one fetch returned and the position after it; None if that took ``seconds``
    (position() waits without limit for a position the broker cannot give)."""
    with anyio.move_on_after(seconds):
        batches = await client.getmany(tp, timeout_ms=int(min(seconds, FETCH_WAIT) * 1000))
        position: int = await client.position(tp)
        return batches.get(tp, []), position
    return None

"""Browsing and replaying a group's dead letters.

What was replayed is remembered as the committed offset of the consumer group
``<group>.dlq-replay`` on the dead-letter topic: browsing starts there, a replay moves
what lies between there and the end and then commits the end, so a second replay moves
nothing twice. Both read with manual assignment (no group join).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.config import KafkaConfig

DLQ_PARTITION = 0  # dead-letter topics have one partition


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
    tp = TopicPartition(dlq, DLQ_PARTITION)
    client = _reader(config, group)
    await client.start()
    try:
        client.assign([tp])
        end = (await client.end_offsets([tp]))[tp]
        # Offset 0 when nothing was replayed: if retention removed it, the reset
        # policy (earliest) moves on to the first record still there.
        start = await client.committed(tp) or 0
        client.seek(tp, start)
        position = start
        while position < end:
            batches = await client.getmany(tp, timeout_ms=1000)
            for record in batches.get(tp, []):
                if record.offset >= end:
                    break
                yield record
                position = record.offset + 1
        if commit and end > start:
            await client.commit({tp: end})
    finally:
        await client.stop()

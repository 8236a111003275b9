"""Browsing and replaying a group's dead letters.

What was replayed is remembered as the committed offset of the consumer group
``<group>.dlq-replay`` on the dead-letter topic: browsing starts there, a replay moves
what lies between there and the end and then commits the end, so a second replay moves
nothing twice. Both read with manual assignment (no group join).

Replaying some letters by id keeps that one mark and the others' order: when a letter
that stays lies before one that goes, the ones that stay are written again, byte for
byte, at the end of the topic and the mark moves past the old end; when the ones that go
are the oldest, the mark just moves past them. So a letter replayed alone is never
replayed again, and browsing stays one read from the mark to the end.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import from_record
from bus.message import Message

log = logging.getLogger("bus.kafka")

DLQ_PARTITION = 0  # dead-letter topics have one partition
STALL = 5.0
"""Seconds of fetching without progress after which a browse ends short of the end."""
FETCH_WAIT = 0.5
"""The longest one fetch waits, so a position moved without records is soon seen."""

Send = Callable[[Message], Awaitable[None]]


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
    async with _Span(config, dlq, group) as span, contextlib.aclosing(span.records()) as found:
        async for record in found:
            yield record
        if commit and span.reached > span.start:
            await span.commit(span.reached)


async def replay_some(
    config: KafkaConfig, dlq: str, group: str, ids: Collection[str], *, send: Send, park: Send
) -> int:
    """Replay the unreplayed letters with these ids (``send`` each, once per id) and mark
    them replayed, the others staying unreplayed in order (``park`` writes one again at
    the end of ``dlq``); return how many were sent. Holds the letters that stay in
    memory while it runs. A failure marks nothing: what was sent may be sent again, and
    a letter already written again shows twice (at least once, never lost)."""
    wanted = set(ids)
    if not wanted:
        return 0
    async with _Span(config, dlq, group) as span, contextlib.aclosing(span.records()) as found:
        sent: set[str] = set()
        kept: list[Message] = []  # the letters that stay, oldest first
        first_kept: int | None = None  # the offset of the oldest
        behind = False  # a letter that goes lies behind one that stays
        async for record in found:
            message = from_record(record)[0]
            if message.id not in wanted:
                first_kept = record.offset if first_kept is None else first_kept
                kept.append(message)
                continue
            behind = behind or first_kept is not None
            if message.id not in sent:  # a second copy of one goes unsent
                sent.add(message.id)
                await send(message)
        if not sent:
            return 0
        if behind:
            for message in kept:
                await park(message)
            await span.commit(span.reached)
        else:
            await span.commit(span.reached if first_kept is None else first_kept)
        return len(sent)


class _Span:
    """One read of ``dlq`` from the replay group's committed offset up to the end offset
    read at the start, by a reader of its own.

    Progress is the consumer's position, not the offsets of records seen: offsets holding
    no record (removed by retention, transaction markers) move it too. Fetching that makes
    no progress for ``STALL`` seconds in all ends the read (logged), so it always ends:
    ``reached`` only rises, to the end at most, and every fetch is bounded in time.
    A replay marks what was reached, never more: letters not read stay unreplayed.
    """

    def __init__(self, config: KafkaConfig, dlq: str, group: str) -> None:
        self.tp = TopicPartition(dlq, DLQ_PARTITION)
        self.client = _reader(config, group)
        self.start = self.end = self.reached = 0

    async def __aenter__(self) -> _Span:
        await self.client.start()
        try:
            self.client.assign([self.tp])
            self.end = (await self.client.end_offsets([self.tp]))[self.tp]
            # Offset 0 when nothing was replayed: if retention removed it, the reset
            # policy (earliest) moves on to the first record still there.
            self.start = self.reached = await self.client.committed(self.tp) or 0
        except BaseException:
            await self.client.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()

    async def commit(self, offset: int) -> None:
        """Mark every letter below ``offset`` replayed."""
        await self.client.commit({self.tp: offset})

    async def records(self) -> AsyncGenerator[Any, None]:
        """The records from ``start`` up to ``end``, each once, in order."""
        client, tp, end = self.client, self.tp, self.end
        if self.start >= end:
            return
        client.seek(tp, self.start)
        stalled = 0.0  # seconds spent fetching since the last progress
        while self.reached < end:
            if stalled >= STALL:
                log.warning(
                    "browsing dead letters on %s stopped at offset %d of %d: nothing came "
                    "for %.0f s (letters removed, or the broker is slow)",
                    tp.topic, self.reached, end, STALL,
                )  # fmt: skip
                break
            began = time.monotonic()
            fetched = await _fetch(client, tp, STALL - stalled)
            if fetched is None:
                stalled = STALL
                continue
            records, position = fetched
            before = self.reached
            for record in records:
                if record.offset >= end:
                    break
                if record.offset >= self.reached:  # never twice, should the position go back
                    yield record
                    self.reached = record.offset + 1
            self.reached = max(self.reached, min(position, end))
            stalled = 0.0 if self.reached > before else stalled + time.monotonic() - began


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

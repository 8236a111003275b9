"""Issue 11 item 8 on Kafka: browsing dead letters always ends, even when the end offset
read at the start cannot be reached by records.

On Apache Kafka that is a partition whose last offsets hold transaction markers, or whose
letters retention removed after the end offset was read; the old browse fetched forever
(``while position < end``, the position taken from records seen), and ``bus dlq list``
hung with it. tansu has neither transactions nor DeleteRecords, so the reader is wrapped
to report an end offset ``GAP`` past the last record: the same partition, as the browse
sees it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from adapters.kafka import KafkaTransport, dlq, topics
from adapters.kafka.config import KafkaConfig
from tests.conformance.helpers import DEADLINE

GAP = 3


class Gapped:
    """A DLQ reader whose partition seems to end ``GAP`` offsets after its last record."""

    def __init__(self, inner: AIOKafkaConsumer) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = await self._inner.end_offsets(tps)
        return {tp: offset + GAP for tp, offset in ends.items()}


@pytest.fixture
def gapped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = dlq._reader

    def reader(config: KafkaConfig, group: str) -> Any:
        return Gapped(real(config, group))

    monkeypatch.setattr(dlq, "_reader", reader)


async def park(transport: KafkaTransport, topic: str, group: str, count: int) -> str:
    """``count`` letters on the group's DLQ topic, one record batch each (so tansu's end
    offset counts them all), from a plain producer."""
    name = topics.dead_letter_topic(topic, group)
    await transport._topics.ensure({name: 1})
    producer = AIOKafkaProducer(bootstrap_servers=transport.config.bootstrap_servers)
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(name, b"letter %d" % n, headers=[("n", b"%d" % n)])
    finally:
        await producer.stop()
    return name


async def browse(transport: KafkaTransport, topic: str, group: str) -> list[bytes]:
    letters: AsyncIterator[Any] = transport.dead_letters(topic, group)
    return [letter.body async for letter in letters]


async def test_browse_and_replay_end_when_the_end_offset_has_no_records(
    transport: KafkaTransport,
    names: tuple[str, str],
    gapped: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic, group = names
    name = await park(transport, topic, group, 2)
    caplog.set_level(logging.WARNING, "bus.kafka")
    with anyio.fail_after(dlq.STALL + DEADLINE):  # the old browse never ended
        assert await browse(transport, topic, group) == [b"letter 0", b"letter 1"]
    assert "stopped at offset 2 of 5" in caplog.text

    with anyio.fail_after(dlq.STALL + DEADLINE):
        assert await transport.replay(topic, group) == 2
    # What was read is marked replayed, and nothing beyond it: the offsets never
    # reached are not taken as read.
    tp = TopicPartition(name, dlq.DLQ_PARTITION)
    reader = AIOKafkaConsumer(
        bootstrap_servers=transport.config.bootstrap_servers,
        group_id=topics.replay_group(group),
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        assert await reader.committed(tp) == 2
    finally:
        await reader.stop()

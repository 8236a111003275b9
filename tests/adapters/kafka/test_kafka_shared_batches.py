"""batches.py: concurrent publishes share record batches, and that changes nothing a
consumer or another Kafka client can see: a keyed record lands where aiokafka's default
partitioner (murmur2, as every Kafka client) puts it, in the order its publishes were
made; a record larger than a batch is sent too; closing settles every publish."""

from __future__ import annotations

import asyncio
import uuid

import anyio
from aiokafka.partitioner import DefaultPartitioner

import bus
from adapters.kafka import KafkaTransport
from adapters.kafka.config import parse
from bus.message import Message
from tests.adapters.kafka.test_kafka_fidelity import read_raw
from tests.conformance.helpers import DEADLINE


def _topic(label: str) -> str:
    return f"batches.{label}.{uuid.uuid4().hex[:8]}"


async def test_keyed_records_land_on_the_default_partitioner_s_partition_in_order(
    kafka_url: str,
) -> None:
    topic = _topic("keyed")
    keys = [f"key-{i}" for i in range(12)]
    async with bus.Bus(kafka_url, presence_interval=None) as b:
        await b.publish(topic, b"warm", key="warm")  # the topic made, its partitions known
        # 600 concurrent publishes: the first of each key's run is queued first.
        await asyncio.gather(
            *(b.publish(topic, f"{k}:{n}".encode(), key=k) for n in range(50) for k in keys)
        )
    records = await read_raw(parse(kafka_url).bootstrap_servers, topic, 601)
    partitions = sorted({r.partition for r in records})
    assert len(partitions) > 1, "one partition only: the keys were not spread"
    every = list(range(parse(kafka_url).partitions))
    seen: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        key = record.key
        assert record.partition == DefaultPartitioner()(key, every, every), key
        name, _, n = record.value.decode().partition(":")
        if name != "warm":
            seen.setdefault(name, []).append(int(n))
    assert seen == {k: list(range(50)) for k in keys}


async def test_unkeyed_records_spread_over_the_partitions(kafka_url: str) -> None:
    topic = _topic("unkeyed")
    async with bus.Bus(kafka_url, presence_interval=None) as b:
        await b.publish(topic, b"warm")
        for _ in range(20):  # rounds of concurrent callers, as a busy service has
            await asyncio.gather(*(b.publish(topic, b"x" * 200) for _ in range(50)))
    records = await read_raw(parse(kafka_url).bootstrap_servers, topic, 1001)
    assert len(records) == 1001
    assert len({r.partition for r in records}) == parse(kafka_url).partitions


async def test_a_record_larger_than_a_batch_goes_alone_beside_small_ones(
    kafka_url: str,
) -> None:
    topic = _topic("large")
    large = [bytes([65 + i]) * 100_000 for i in range(3)]  # a batch holds 16 KiB
    async with bus.Bus(kafka_url, presence_interval=None) as b:
        await b.publish(topic, b"warm")
        small = [f"s{i}".encode() for i in range(60)]
        await asyncio.gather(*(b.publish(topic, body) for body in small[:30] + large + small[30:]))
    records = await read_raw(parse(kafka_url).bootstrap_servers, topic, 64)
    assert sorted(r.value for r in records) == sorted([b"warm", *small, *large])


async def test_closing_settles_every_queued_publish(kafka_url: str) -> None:
    topic = _topic("close")
    transport = KafkaTransport(kafka_url)
    await transport.connect()
    outcomes: list[str] = []
    try:
        await transport.publish(topic, Message(id="warm", body=b"warm"))

        async def publish(i: int) -> None:
            try:
                await transport.publish(topic, Message(id=f"m{i}", body=b"x"))
                outcomes.append("sent")
            except bus.PublishError:
                outcomes.append("failed")

        tasks = [asyncio.create_task(publish(i)) for i in range(300)]
        await asyncio.sleep(0)  # queued, not yet sent
    finally:
        with anyio.fail_after(DEADLINE):
            await transport.close()
    with anyio.fail_after(DEADLINE):
        await asyncio.gather(*tasks)
    assert len(outcomes) == 300
    sent = outcomes.count("sent")
    assert sent > 0, "closing dropped what was queued instead of sending it"
    records = await read_raw(parse(kafka_url).bootstrap_servers, topic, 1 + sent)
    assert len(records) >= 1 + sent

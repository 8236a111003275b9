"""What offset commits to a second group cost a Kafka consumer beside them, on tansu.

Raw aiokafka consumes a 50,000-record topic with and without a second client in the same
process committing to another group every 4 ms (the load the handed-out marks of
adapters/kafka/marks.py would add at one commit per batch), three rounds each:

    .venv/bin/python -m benchmarks.kafka_commit_cost
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import kafka_raw as raw
from benchmarks.common import Item, items, yielding_handler
from benchmarks.suite.brokers import Tansu

N = 50_000
EVERY = 0.004  # seconds between side commits


async def _fill(servers: str, topic: str) -> None:
    await raw.create(servers, topic)
    producer = await raw.producer(servers)
    try:
        await raw.publish(producer, topic, [msgspec.json.encode(i) for i in items(N)], 1000)
    finally:
        await producer.stop()


async def _committer(servers: str, topic: str, stop: asyncio.Event) -> int:
    client = AIOKafkaConsumer(
        bootstrap_servers=servers,
        group_id=raw.unique("side"),
        enable_auto_commit=False,
    )
    await client.start()
    tps = [TopicPartition(topic, p) for p in range(raw.PARTITIONS)]
    client.assign(tps)
    client.pause(*tps)
    done = 0
    try:
        while not stop.is_set():
            await client.commit({tps[done % len(tps)]: done + 1})
            done += 1
            await asyncio.sleep(EVERY)
    finally:
        await client.stop()
    return done


async def main(servers: str) -> None:
    for _ in range(3):
        for side in (False, True):
            topic = raw.unique(f"cc-{uuid.uuid4().hex[:4]}")
            await _fill(servers, topic)
            stop = asyncio.Event()
            committer = asyncio.create_task(_committer(servers, topic, stop)) if side else None
            rate = await raw.consume(servers, topic, Item, yielding_handler, N)
            stop.set()
            commits = await committer if committer else 0
            print(
                f"raw consume, side commits {'on ' if side else 'off'}: {rate:>9,.0f} msg/s "
                f"({commits} side commits)"
            )


if __name__ == "__main__":
    broker = Tansu()
    try:
        asyncio.run(main(broker.bootstrap))
    finally:
        broker.stop()

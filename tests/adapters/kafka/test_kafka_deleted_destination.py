"""A retry or dead-letter topic deleted by an operator does not stop a group: the copy
goes through (the adapter creates the topic again when a send to it fails; tansu also
creates a topic on demand, so there this proves the outcome, not which of the two did it)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

import bus
from adapters.kafka.topics import dead_letter_topic, retry_topic
from tests.brokers.kafka import HOST, Tansu
from tests.conformance.helpers import Item, letters_of, unique, wait_until


async def test_deleted_retry_and_dead_letter_topics_are_made_again(
    kafka_broker: Tansu, kafka_url: str
) -> None:
    topic, group = unique("t"), unique("g")
    attempts: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.01))
    async def handle(item: Item, ctx: bus.Context) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("always")

    async with bus.Bus(kafka_url, services=[svc]) as b:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{HOST}:{kafka_broker.port}")
        await admin.start()
        try:
            await admin.delete_topics(
                [retry_topic(topic, group), dead_letter_topic(topic, group)], timeout_ms=10000
            )
        finally:
            await admin.close()
        await b.publish(topic, Item(1))
        await wait_until(lambda: attempts == [1, 2])
        [letter] = await letters_of(b, topic, group, 1)
    assert letter.reason == "failed" and letter.attempts == 2

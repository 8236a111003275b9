"""``forget``, the clean-up bus.testing asks of an adapter: on Kafka it deletes a group's
retry and dead-letter topics (the topic itself is shared and stays)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from adapters.kafka import KafkaTransport, topics
from tests.brokers.kafka import Tansu
from tests.conformance.helpers import unique


async def listed(broker: Tansu) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{broker.port}")
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_forget_deletes_a_groups_retry_and_dead_letter_topics(
    kafka_broker: Tansu, kafka_url: str
) -> None:
    topic, group = unique("forget.t"), unique("forget-g")
    transport = KafkaTransport(kafka_url)
    await transport.connect()
    try:
        consumer = await transport.consume(topic, group, prefetch=1)
        await consumer.close()
        ours = {topics.retry_topic(topic, group), topics.dead_letter_topic(topic, group)}
        assert ours <= await listed(kafka_broker)
        await transport.forget(topic, group)
        assert not ours & await listed(kafka_broker)
        assert topic in await listed(kafka_broker)
        await transport.forget(topic, group)  # idempotent
    finally:
        await transport.close()

"""Where tansu (the test broker) differs from Apache Kafka, measured. Each test asserts
tansu's behaviour, so it fails (and the note can go) once tansu behaves like Kafka.
The adapter stays correct for Apache Kafka and works around each of these."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tests.brokers.kafka import Tansu

pytestmark = pytest.mark.tansu


def servers(broker: Tansu) -> str:
    return f"127.0.0.1:{broker.port}"


async def new_topic(broker: Tansu, partitions: int = 1) -> str:
    name = f"tansu.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(broker))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def test_end_offset_counts_only_the_first_record_of_the_last_batch(
    kafka_broker: Tansu,
) -> None:
    """Kafka: ListOffsets(latest) is one past the last record. tansu: one past the first
    record of the last batch. The adapter sends dead letters one per batch (browsing
    stops at the end offset); nothing else relies on end offsets."""
    topic = await new_topic(kafka_broker)
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=servers(kafka_broker), acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(kafka_broker))
    await producer.start()
    await consumer.start()
    try:
        futures = [await producer.send(topic, b"x") for _ in range(5)]  # one batch of 5
        offsets = [(await f).offset for f in futures]
        assert offsets == [0, 1, 2, 3, 4]
        consumer.assign([tp])
        assert (await consumer.end_offsets([tp]))[tp] == 1  # Apache Kafka: 5
    finally:
        await consumer.stop()
        await producer.stop()


async def test_idempotent_producer_is_refused(kafka_broker: Tansu) -> None:
    """Kafka: InitProducerId succeeds. tansu 0.6: UnknownError, so the adapter falls back
    to a plain acks=all producer (it logs that once per connect)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=servers(kafka_broker), acks="all", enable_idempotence=True
    )
    try:
        with pytest.raises(KafkaError):
            await producer.start()
    finally:
        await producer.stop()


async def test_a_fetch_is_held_for_the_full_wait_even_when_data_arrives(
    kafka_broker: Tansu,
) -> None:
    """Kafka answers a waiting fetch as soon as data arrives. tansu holds it for the whole
    fetch_max_wait_ms: hence the URL option, set to 5 ms in tests."""
    topic = await new_topic(kafka_broker)
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=servers(kafka_broker))
    consumer = AIOKafkaConsumer(bootstrap_servers=servers(kafka_broker), fetch_max_wait_ms=1000)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        await consumer.getmany(tp, timeout_ms=50)  # a fetch now waits at the broker
        await producer.send_and_wait(topic, b"x")
        sent = time.monotonic()
        with anyio.fail_after(10):
            while not (await consumer.getmany(tp, timeout_ms=2000)).get(tp):
                pass
        assert time.monotonic() - sent > 0.3  # Apache Kafka: a few milliseconds
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_group_join_is_answered_after_about_half_the_session_timeout(
    kafka_broker: Tansu,
) -> None:
    """Kafka answers the first join after group.initial.rebalance.delay.ms (3 s by
    default, 0 in most test set-ups). tansu: about half the session timeout, so the test
    URL sets session_timeout_ms low."""
    topic = await new_topic(kafka_broker)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers(kafka_broker),
        group_id=f"g.{uuid.uuid4().hex[:8]}",
        session_timeout_ms=4000,
        heartbeat_interval_ms=1000,
    )
    started = time.monotonic()
    await consumer.start()  # returns once partitions are assigned
    try:
        assert time.monotonic() - started >= 1.5
    finally:
        await consumer.stop()


async def test_metadata_for_an_unknown_topic_creates_it(kafka_broker: Tansu) -> None:
    """Apache Kafka creates a topic on a metadata request only with
    auto.create.topics.enable (true by default, usually turned off in production); tansu
    always does. The adapter creates its topics itself and never relies on either."""
    name = f"tansu.unknown.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(kafka_broker))
    await admin.start()
    try:
        [described] = await admin.describe_topics([name])
        assert described["error_code"] == 0
        assert name in await admin.list_topics()
    finally:
        await admin.close()


async def test_an_offset_commit_keeps_no_metadata(kafka_broker: Tansu) -> None:
    """Kafka: OffsetCommit stores a metadata string per partition, read back by
    OffsetFetch. tansu: it reads back empty. (So the adapter's handed-out marks, which
    let Kafka count redeliveries, are committed offsets of a shadow group, not metadata:
    see adapters/kafka/marks.py.)"""
    topic = await new_topic(kafka_broker)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers(kafka_broker),
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(3, "handed-out:9")})
        # aiokafka's public committed() returns the offset alone; its admin client's
        # OffsetFetch fails to parse tansu's answer, so ask the way committed() does.
        stored = (await consumer._coordinator.fetch_committed_offsets([tp]))[tp]
        assert stored.offset == 3
        assert stored.metadata == ""  # Apache Kafka: "handed-out:9"
    finally:
        await consumer.stop()

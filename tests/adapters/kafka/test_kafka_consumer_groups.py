"""One service's subscriptions do not stall each other (issue 11, item 5): each (group,
topic) is a Kafka consumer group of its own, so a rebalance of one topic's members,
held up by a record still being handled, pauses no other topic of the service."""

from __future__ import annotations

import uuid

import anyio
import msgspec

import bus
from adapters.kafka import KafkaTransport
from adapters.kafka.consumer import KafkaConsumer
from adapters.kafka.marks import marks_group
from tests.brokers.kafka import OPTIONS, Tansu

from .test_kafka_transport import msg, take


async def member(transport: KafkaTransport, topic: str, group: str) -> KafkaConsumer:
    consumer = await transport.consume(topic, group, prefetch=1)
    assert isinstance(consumer, KafkaConsumer)
    return consumer


async def test_a_rebalance_of_one_topic_does_not_pause_another_of_the_same_group(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic_a, group = names
    topic_b = f"{topic_a}.b"
    a = await member(transport, topic_a, group)
    b = await member(transport, topic_b, group)
    await transport.publish(topic_a, msg(b"held", key="k"))
    held = await take(a, timeout=30)
    with anyio.fail_after(30):
        await b.assigned.wait()
    joiner = await member(transport, topic_a, group)  # a second member of topic A
    with anyio.fail_after(30):  # A's rebalance now waits on the record being handled
        await a.revoking.wait()
    await transport.publish(topic_b, msg(b"meanwhile", key="k"))
    meanwhile = await take(b, timeout=10)
    assert meanwhile.message.body == b"meanwhile"
    assert a.revoking.is_set(), "A's rebalance was over before B's message came"
    await meanwhile.ack()
    await held.ack()
    with anyio.fail_after(30):  # A's rebalance completes once its record is settled
        await joiner.assigned.wait()
    for consumer in (a, b, joiner):
        await consumer.close()
    assert (a.group_id, b.group_id) == (f"{group}:{topic_a}", f"{group}:{topic_b}")
    assert marks_group(a.group_id) == f"{group}:{topic_a}:marks"


class Ask(msgspec.Struct):
    n: int


async def test_a_handler_requesting_a_sibling_topic_completes_while_its_topic_rebalances(
    kafka_broker: Tansu,
) -> None:
    url = kafka_broker.url(OPTIONS)
    tag = uuid.uuid4().hex[:8]
    service, topic_a, topic_b = f"svc-{tag}", f"work.{tag}", f"lookup.{tag}"
    rebalancing = anyio.Event()
    started = anyio.Event()
    answers: list[tuple[int, bool]] = []  # (answer, A still rebalancing when it came)
    first = bus.Service(service)
    a_member: list[KafkaConsumer] = []

    @first.subscribe(topic_a, concurrency=1)
    async def work(ask: Ask, ctx: bus.Context) -> None:
        started.set()
        await rebalancing.wait()
        answer = await ctx.request(topic_b, ask, response=Ask, timeout=20)
        answers.append((answer.n, a_member[0].revoking.is_set()))

    @first.respond(topic_b)
    async def lookup(ask: Ask) -> Ask:
        return Ask(ask.n * 10)

    second = bus.Service(service)  # a second member of topic A's group only

    @second.subscribe(topic_a, concurrency=1)
    async def work_too(ask: Ask) -> None:
        answers.append((-ask.n, False))

    async with bus.Bus(url, services=[first], presence_interval=None) as one:
        transport = one.transport
        assert isinstance(transport, KafkaTransport)
        a_member.extend(c for c in transport._consumers if c.topic == topic_a)
        await one.publish(topic_a, Ask(1), key="k")
        with anyio.fail_after(30):
            await started.wait()
        async with bus.Bus(url, services=[second], presence_interval=None):
            with anyio.fail_after(30):  # A's rebalance waits on the handler now
                await a_member[0].revoking.wait()
            rebalancing.set()
            with anyio.fail_after(30):
                while not answers:
                    await anyio.sleep(0.02)
            assert answers == [(10, True)], "the request waited for its own rebalance"

"""``forget``, the clean-up bus.testing asks of an adapter: on RabbitMQ it deletes a
group's queue and dead-letter queue, messages and all, and deleting again is no error."""

from __future__ import annotations

import aiormq
import aiormq.exceptions

from adapters.rabbitmq import RabbitTransport, topology
from bus.message import Message
from tests.conformance.helpers import unique


async def exists(url: str, queue: str) -> bool:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, passive=True)
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def test_forget_deletes_a_groups_queues(rabbitmq_url: str) -> None:
    topic, group = unique("forget.t"), unique("forget-g")
    transport = RabbitTransport(rabbitmq_url)
    await transport.connect()
    try:
        consumer = await transport.consume(topic, group, prefetch=1)
        await consumer.close()
        await transport.publish(topic, Message(id="m-1", body=b"{}"))  # left in the queue
        queues = [
            topology.group_queue(transport.config, topic, group),
            topology.dead_letter_queue(transport.config, topic, group),
        ]
        url = transport.config.amqp_url
        assert [await exists(url, q) for q in queues] == [True, True]
        await transport.forget(topic, group)
        assert [await exists(url, q) for q in queues] == [False, False]
        await transport.forget(topic, group)  # idempotent
    finally:
        await transport.close()

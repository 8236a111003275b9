"""The watch on quorum delay queues (adapters/rabbitmq/overdue.py). The leader change
that makes RabbitMQ 3.10.8 leave retries behind is staged in tests/cluster; here, on the
shared node, the watch's own behaviour: a retry that comes back as it should costs a
look and no nudge, and a nudge never takes a message that is not due."""

from __future__ import annotations

import logging
import uuid

import aiormq
import anyio
import msgspec
import pytest

import bus
from adapters.rabbitmq import RabbitTransport
from adapters.rabbitmq.overdue import CHECKS, Overdue
from tests.brokers.rabbitmq import url_for
from tests.conformance.helpers import unique, wait_until

NUDGED = "still holds"


class Job(msgspec.Struct):
    n: int


async def test_retries_through_a_quorum_delay_queue_need_no_nudge(
    rabbitmq_run: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "bus.rabbitmq")
    url = url_for(f"{rabbitmq_run}-overdue", queue_type="quorum")
    calls: list[int] = []
    service = bus.Service(unique("overdue"))

    @service.subscribe(unique("overdue.t"), retry=bus.Retry(attempts=2, backoff=0.2))
    async def fails_once(job: Job, ctx: bus.Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")

    topic = service.subscriptions[0].topic
    async with bus.Bus(url, services=[service]) as b:
        await b.publish(topic, Job(1))
        await wait_until(lambda: calls == [1, 2])
        transport = b.transport
        assert isinstance(transport, RabbitTransport)
        watch = transport._overdue
        assert watch is not None
        await wait_until(lambda: not watch._due, timeout=10)  # looked, found it empty
    assert NUDGED not in caplog.text


async def test_a_nudge_gives_back_what_is_not_due(
    rabbitmq_run: str, caplog: pytest.LogCaptureFixture
) -> None:
    transport = RabbitTransport(url_for(f"{rabbitmq_run}-overdue", queue_type="quorum"))
    await transport.connect()
    queue = f"{rabbitmq_run}-overdue:nudged:{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(transport.config.amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.basic_publish(b"not due", routing_key=queue)
        watch = Overdue(transport._link, grace=0.05)
        with caplog.at_level(logging.WARNING, "bus.rabbitmq"):
            watch.sent(queue, 0.01)  # as if a retry were due at once: it is not
            with anyio.fail_after(10):
                while watch._due:
                    await anyio.sleep(0.02)
        assert caplog.text.count(NUDGED) == CHECKS  # nudged, asked again, then left alone
        declared = await channel.queue_declare(queue, passive=True)
        assert declared.message_count == 1  # given back each time, never lost
        got = await channel.basic_get(queue, no_ack=True)
        assert got is not None and got.body == b"not due"
        await watch.close()
        await channel.queue_delete(queue)
        gone = Overdue(transport._link, grace=0.05)  # a queue deleted meanwhile: no error
        gone.sent(queue, 0.01)
        with anyio.fail_after(10):
            while gone._due:
                await anyio.sleep(0.02)
        await gone.close()
    finally:
        await connection.close()
        await transport.close()

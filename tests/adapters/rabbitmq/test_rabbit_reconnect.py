"""A lost connection comes back: topology again, consumers resumed, no publish lost."""

from __future__ import annotations

import uuid

import aio_pika
import anyio
import pytest

import bus
from adapters.rabbitmq import RabbitTransport
from bus.message import Message, new_id
from tests.brokers.rabbitmq import close_connections, url_for


async def test_connection_cut_mid_stream_loses_nothing(rabbitmq_run: str) -> None:
    name = f"{rabbitmq_run}-reconnect-{uuid.uuid4().hex[:6]}"
    t = RabbitTransport(url_for(rabbitmq_run, name=name))
    await t.connect()
    topic, group = f"t.{name}", "g"
    try:
        consumer = await t.consume(topic, group, prefetch=20)
        inbox = await t.open_inbox()
        got: set[bytes] = set()

        async def drain() -> None:
            async for d in consumer:
                got.add(d.message.body)
                await d.ack()

        total = 2000

        async def publish_all() -> None:
            for start in range(0, total, 50):  # 50 confirms in flight at a time
                async with anyio.create_task_group() as batch:
                    for i in range(start, start + 50):
                        batch.start_soon(t.publish, topic, Message(id=new_id(), body=b"%d" % i))

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            tg.start_soon(publish_all)
            with anyio.fail_after(30):
                while len(got) < 300:
                    await anyio.sleep(0.005)
                assert len(got) < total, "the cut should come mid-stream"
                assert await anyio.to_thread.run_sync(close_connections, name) == 1
                while len(got) < total:
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        assert got == {b"%d" % i for i in range(total)}

        # the inbox consumes again on the new connection
        requests = await t.consume(topic + ".rpc", group, prefetch=5)
        await t.publish(topic + ".rpc", Message(id=new_id(), body=b"q", reply_to=inbox.address))
        with anyio.fail_after(20):
            request = await requests.__anext__()
            assert request.message.reply_to is not None
            await t.send(request.message.reply_to, Message(id=new_id(), body=b"a"))
            await request.ack()
            assert (await inbox.__anext__()).body == b"a"
    finally:
        await t.close()


async def test_a_deleted_queue_is_declared_again_and_consumption_resumes(
    rabbitmq_url: str,
) -> None:
    t = RabbitTransport(rabbitmq_url)
    await t.connect()
    topic, group = f"t.del.{uuid.uuid4().hex[:6]}", "g"
    try:
        consumer = await t.consume(topic, group, prefetch=5)
        conn = await aio_pika.connect(rabbitmq_url.split("?")[0])
        try:
            channel = await conn.channel()
            await channel.queue_delete(f"{t.config.exchange}:{group}:{topic}")
        finally:
            await conn.close()
        with anyio.fail_after(20):
            while True:  # until the queue is back and bound, a publish reaches nobody
                await t.publish(topic, Message(id=new_id(), body=b"again"))
                with anyio.move_on_after(0.2):
                    delivery = await consumer.__anext__()
                    break
        assert delivery.message.body == b"again"
        await delivery.ack()
        await consumer.close()
    finally:
        await t.close()


async def test_using_a_transport_before_connect_fails_at_once(rabbitmq_url: str) -> None:
    t = RabbitTransport(rabbitmq_url)
    with anyio.fail_after(5), pytest.raises(bus.BusError):
        await t.publish("t", Message(id=new_id(), body=b""))

"""A lost connection comes back: topology again, consumers resumed, no publish lost."""

from __future__ import annotations

import uuid

import anyio

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

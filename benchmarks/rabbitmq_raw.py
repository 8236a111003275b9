"""The raw aio-pika side of the RabbitMQ benchmark: the same work as the bus, by hand.

Each case does what the bus does for the same call: encode/decode with msgspec into the
same Struct, await the same handler, ack after it, publish with publisher confirms.
Written the way aio-pika's documentation shows (callback consumer, ``message.ack()``,
``exchange.publish``), with direct reply-to for request-reply.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractIncomingMessage

JSON = "application/json"


async def publish(
    url: str, exchange_name: str, topic: str, payloads: list[Any], window: int
) -> None:
    """Publish every payload with confirms, ``window`` in flight at a time."""
    encode = msgspec.json.Encoder().encode
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        for start in range(0, len(payloads), window):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            encode(p),
                            content_type=JSON,
                            message_id=uuid.uuid4().hex,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        topic,
                    )
                    for p in payloads[start : start + window]
                )
            )
    finally:
        await conn.close()


async def consume(
    url: str,
    queue_name: str,
    payload_type: type,
    handler: Callable[[Any], Awaitable[None]],
    count: int,
    prefetch: int,
) -> None:
    """Consume ``count`` messages already in ``queue_name``: decode, handle, ack."""
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(payload_type).decode
    conn = await aio_pika.connect(url)
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await handler(decode(message.body))
        await message.ack()
        seen += 1
        if seen >= count:
            done.set()

    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name)
        await queue.consume(on_message)
        await done.wait()
    finally:
        await conn.close()


class Responder:
    """Answers requests on a queue: decode, handle, publish the reply (confirmed), ack."""

    def __init__(self, url: str, queue_name: str, request_type: type, handler: Any) -> None:
        self._url, self._queue_name = url, queue_name
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(request_type).decode
        self._encode = msgspec.json.Encoder().encode
        self._handler = handler
        self._conn: aio_pika.abc.AbstractConnection | None = None

    async def start(self, prefetch: int) -> None:
        self._conn = await aio_pika.connect(self._url)
        channel = await self._conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        exchange = channel.default_exchange

        async def on_request(message: AbstractIncomingMessage) -> None:
            result = await self._handler(self._decode(message.body))
            reply = aio_pika.Message(
                self._encode(result),
                content_type=JSON,
                correlation_id=message.correlation_id,
                message_id=uuid.uuid4().hex,
            )
            await exchange.publish(reply, message.reply_to or "", mandatory=False)
            await message.ack()

        queue = await channel.get_queue(self._queue_name)
        await queue.consume(on_request)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


class Requester:
    """Sends requests with direct reply-to and matches replies by correlation id."""

    def __init__(self, url: str, exchange_name: str, response_type: type) -> None:
        self._url, self._exchange_name = url, exchange_name
        self._decode: Callable[[bytes], Any] = msgspec.json.Decoder(response_type).decode
        self._encode = msgspec.json.Encoder().encode
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._conn: aio_pika.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._conn = await aio_pika.connect(self._url)
        channel = await self._conn.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self._exchange_name)

        async def on_reply(message: AbstractIncomingMessage) -> None:
            future = self._pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(self._decode(message.body))

        replies = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await replies.consume(on_reply, no_ack=True)

    async def request(self, topic: str, payload: Any, timeout: float = 10.0) -> Any:
        cid = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = future
        try:
            await self._exchange.publish(
                aio_pika.Message(
                    self._encode(payload),
                    content_type=JSON,
                    correlation_id=cid,
                    message_id=cid,
                    reply_to="amq.rabbitmq.reply-to",
                ),
                topic,
            )
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(cid, None)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

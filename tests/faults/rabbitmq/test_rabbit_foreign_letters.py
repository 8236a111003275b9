"""A foreign producer's message, dead-lettered and replayed, keeps every header value and
property it was published with: compared with what was PUBLISHED, read back by a plain
client, not with the headers the bus converted."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import AsyncIterator

import aio_pika
import anyio
import pytest
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

import bus
from adapters.rabbitmq import topology
from adapters.rabbitmq.config import parse
from tests.adapters.rabbitmq.foreign import TYPED_FIELDS, RawHeaders, over_the_wire, table, typed

STAMP = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
# The properties a foreign producer set; user_id must be the publisher's own login.
PROPS = {
    "priority": 5,
    "timestamp": STAMP,
    "message_type": "order.legacy",
    "app_id": "legacy-app",
    "expiration": "3600000",
    "user_id": "guest",
    "content_encoding": "identity",
    "correlation_id": "corr-1",
}
PIKA_HEADERS = {  # what aio-pika (pamqp) writes: each value in the smallest type it fits
    "small": 5,
    "short": 300,
    "ushort": 40000,
    "long": 70000,
    "ulong": 3_000_000_000,
    "longlong": 2**40,
    "negative": -7,
    "yes": True,
    "no": False,
    "nested": {"a": 1, "b": {"c": "deep"}, "l": [1, "two"]},
    "list": [1, "two", False, {"k": "v"}],
    "bytes": bytearray(b"\x00\xffraw"),
    "decimal": decimal.Decimal("12.34"),
    "when": STAMP,
    "empty": "",
}


def published_typed_headers() -> dict[str, object]:
    """The raw table's headers as a client decodes them (pamqp, as aio-pika does)."""
    wire = over_the_wire(RawHeaders(table(*TYPED_FIELDS)), b"")
    headers = wire.header.properties.headers
    assert headers is not None
    return headers


@pytest.fixture
async def plain(rabbitmq_url: str) -> AsyncIterator[AbstractChannel]:
    async with await aio_pika.connect(rabbitmq_url.split("?")[0]) as conn:
        yield await conn.channel()


async def get_all(channel: AbstractChannel, queue: str, n: int) -> list[DeliveredMessage]:
    """``n`` messages of ``queue`` as a plain client reads them off the wire (basic.get,
    unacked), then handed back to the queue untouched (nack, requeue)."""
    raw = await channel.get_underlay_channel()
    out: list[DeliveredMessage] = []
    with anyio.fail_after(30):
        while len(out) < n:
            got = await raw.basic_get(queue, no_ack=False)
            if isinstance(got.delivery, Basic.GetOk):
                out.append(got)
            else:
                await anyio.sleep(0.05)
    await raw.basic_nack(getattr(out[-1].delivery, "delivery_tag", 0), multiple=True)
    return out


def check_copy(got: DeliveredMessage, published: dict[str, object], message_id: str) -> None:
    props = got.header.properties
    headers = props.headers or {}
    ours = {k: v for k, v in headers.items() if k.startswith("bus-dlq-")}
    theirs = {k: v for k, v in headers.items() if not k.startswith("bus-dlq-")}
    assert typed(theirs) == typed(published)
    assert ours["bus-dlq-reason"] == "rejected"
    for name, value in PROPS.items():
        assert getattr(props, name) == value, name
    assert props.content_type is None, "a missing content type stays missing"
    assert props.message_id == message_id
    assert props.reply_to is None and props.delivery_mode == 2


async def test_foreign_letters_keep_every_value_through_dead_letter_and_replay(
    rabbitmq_url: str, plain: AbstractChannel
) -> None:
    config = parse(rabbitmq_url)
    tag = uuid.uuid4().hex[:6]
    topic, group = f"foreign.{tag}", f"g-{tag}"
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=2)
    async def refuse(body: bytes) -> None:
        raise bus.Reject("not for us")

    raw = await plain.get_underlay_channel()
    typed_headers = published_typed_headers()
    async with bus.Bus(rabbitmq_url, services=[service]) as b:
        # 1: exact wire types and no message_id at all; 2: aio-pika's own, with an id
        await raw.basic_publish(
            b"\x00 not json",
            exchange=config.exchange,
            routing_key=topic,
            properties=RawHeaders(table(*TYPED_FIELDS), send_id=False, **PROPS),
        )
        exchange = await plain.get_exchange(config.exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(b"{}", headers=PIKA_HEADERS, message_id="m-2", **_pika(PROPS)),
            routing_key=topic,
        )
        with anyio.fail_after(30):
            while len(letters := [d async for d in b.dead_letters(topic, group=group)]) < 2:
                await anyio.sleep(0.05)
    ids = {letter.body: letter.message_id for letter in letters}
    assert ids[b"{}"] == "m-2" and len(ids[b"\x00 not json"]) == 32

    expected = {b"\x00 not json": typed_headers, b"{}": PIKA_HEADERS}
    dlq = topology.dead_letter_queue(config, topic, group)
    for got in await get_all(plain, dlq, 2):  # read off the DLQ by a plain client
        check_copy(got, expected[got.body], ids[got.body])

    async with bus.Bus(rabbitmq_url) as b:  # nobody consumes: the replayed wait in the queue
        assert await b.replay(topic, group=group) == 2
    queue = topology.group_queue(config, topic, group)
    for got in await get_all(plain, queue, 2):
        check_copy(got, expected[got.body], ids[got.body])


def _pika(props: dict[str, object]) -> dict[str, object]:
    """PROPS in aio-pika's Message keywords (it takes the expiration in seconds)."""
    out = dict(props)
    out["type"] = out.pop("message_type")
    out["expiration"] = int(str(out["expiration"])) // 1000
    return out

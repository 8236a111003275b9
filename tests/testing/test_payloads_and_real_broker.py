"""``payloads(Type)`` draws every legal payload; and the kit on RabbitMQ in real time."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import anyio
import msgspec
import pytest
from hypothesis import given, settings

import bus
from bus import codec
from bus.testing import TestBus, payloads
from tests.testing.shop_like import Placed, Reserved, Shipped, cascade

Quantity = Annotated[int, msgspec.Meta(ge=1, le=99)]
Sku = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}-[0-9]{3}$")]


class Line(msgspec.Struct, frozen=True):
    sku: Sku
    quantity: Quantity


class Order(msgspec.Struct, frozen=True):
    order_id: uuid.UUID
    lines: Annotated[list[Line], msgspec.Meta(min_length=1, max_length=4)]
    placed_at: datetime.datetime
    channel: Literal["web", "shop"] = "web"
    note: str | None = None
    tags: dict[str, int] = {}


@settings(max_examples=60)
@given(payloads(Order))
def test_payloads_draw_only_legal_values_that_survive_the_wire(order: Order) -> None:
    for content_type in ("application/json", "application/msgpack"):
        assert codec.decode(codec.encode(order, content_type), Order, content_type) == order
    assert 1 <= len(order.lines) <= 4
    assert all(1 <= line.quantity <= 99 for line in order.lines)


# Fuzzing a handler: every legal order reaches the end of the cascade, none is stuck.
@settings(max_examples=25)
@given(payloads(Placed))
def test_fuzzing_a_cascade_with_payloads(event: Placed) -> None:
    async def run() -> None:
        async with TestBus(services=cascade("fz")) as t:
            await t.publish("fz.placed", event)
            await t.settle()
            rejected = [d async for d in t.dead_letters("fz.placed", group="fz-inventory")]
            if event.quantity <= 0:
                assert [d.reason for d in rejected] == ["rejected"]
            else:
                assert t.published("fz.shipped", Shipped) == [Shipped(event.order_id, 1)]

    anyio.run(run)


def test_payloads_refuses_a_type_it_cannot_draw() -> None:
    with pytest.raises(bus.ConfigError, match="cannot draw"):
        payloads(object)


async def test_the_cascade_with_retries_settles_on_rabbitmq(rabbitmq_url: str) -> None:
    prefix = f"rq{uuid.uuid4().hex[:8]}"
    retry = bus.Retry(attempts=3, backoff=0.05)
    async with TestBus(services=cascade(prefix, retry=retry), url=rabbitmq_url) as t:
        assert not t.virtual
        t.fail(f"{prefix}.reserved", times=1)
        await t.publish(f"{prefix}.placed", Placed("o-1", 1))
        await t.publish(f"{prefix}.placed", Placed("o-bad", 0))
        await t.settle()
        assert t.published(f"{prefix}.reserved", Reserved) == [Reserved("o-1")]
        assert t.published(f"{prefix}.shipped", Shipped) == [Shipped("o-1", 2)]
        letters = [d async for d in t.dead_letters(f"{prefix}.placed", group=f"{prefix}-inventory")]
        assert [d.reason for d in letters] == ["rejected"]

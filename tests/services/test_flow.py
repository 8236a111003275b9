"""The order flow on the test kit, in both styles: orders go in as ``order.create``
requests; payments fail transiently (retried), decline cards, or never answer; scarce
stock runs out. Every order ends confirmed or failed with its compensation done, none
stuck; the stock adds up exactly; every final state is told to the customer; nothing is
dead-lettered. On the virtual clock by default (backoffs of seconds, in no wall time);
``make test`` runs this file again on RabbitMQ with ``--bus-url``. The gateway's HTTP
path is test_gateway's and test_trace's; under load with processes killed,
test_processes' (RabbitMQ and Kafka)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import bus
from bus.testing import TestBus
from services import contracts as c
from services.config import STYLES, Config
from services.load import make_order
from services.payments import UNAVAILABLE
from services.shop import Shop
from tests.services.conftest import kit_config

SCARCE = "scarce"
STOCK = {"widget": 10_000, "gadget": 10_000, SCARCE: 3}


async def place_orders(
    t: TestBus, cfg: Config, n: int, *, declined: float, scarce: str | None = SCARCE
) -> None:
    """``n`` random orders (services.load's mix), each created by a request."""
    rng = random.Random(3)
    for i in range(n):
        body = make_order(rng, i, declined=declined, scarce=scarce)
        lines = [c.Line(**line) for line in body["lines"]]
        order = c.CreateOrder(f"o-{i}", body["customer"], body["card"], lines)
        created = await t.request(cfg.topic(c.ORDER_CREATE), order, response=c.Order)
        assert created.status == c.PENDING


async def check_orders(t: TestBus, shop: Shop, n: int) -> dict[str, c.Order]:
    """Every order final, each failure compensated, the stock adding up exactly, every
    final state told, no dead letters; the orders, by id."""
    orders = shop.orders.store
    assert len(orders) == n
    assert [o.order_id for o in orders.values() if o.status not in c.FINAL_STATES] == []
    for order in orders.values():
        if order.status == c.CONFIRMED:
            assert order.reason == "" and order.compensations == []
        elif order.reason.startswith("out of stock"):
            assert order.compensations == []  # nothing was reserved
            assert SCARCE in order.reason
        else:  # failed after the reservation: it was given back
            assert order.reason in ("card declined", UNAVAILABLE), order.reason
            assert c.RELEASED_STOCK in order.compensations
    confirmed = {k for k, o in orders.items() if o.status == c.CONFIRMED}
    assert set(shop.inventory.reservations) == confirmed
    taken: Counter[str] = Counter()
    for order_id in confirmed:
        for line in orders[order_id].lines:
            taken[line.sku] += line.quantity
    assert shop.inventory.stock == {sku: n - taken[sku] for sku, n in STOCK.items()}
    assert shop.notifications.sent == Counter(o.status for o in orders.values())
    told = t.published(shop.cfg.topic(c.ORDER_CONFIRMED)) + t.published(
        shop.cfg.topic(c.ORDER_FAILED)
    )
    assert len(told) == n  # sent through the outbox, once each
    for topic, group in shop.subscriptions():
        assert [d async for d in t.dead_letters(topic, group=group)] == []
    return orders


async def dead_letter_count(cfg: Config, shop: Shop) -> int:
    """Dead letters of every subscription of the shop (tests/cluster counts with it)."""
    found = 0
    async with bus.Bus(cfg.url) as b:
        for topic, group in shop.subscriptions():
            found += len([d async for d in b.dead_letters(topic, group=group)])
    return found


@pytest.mark.parametrize("style", STYLES)
async def test_every_order_ends_confirmed_or_compensated(style: str) -> None:
    cfg = kit_config(style=style, stock=STOCK, payment_flaky=0.3)
    shop = Shop(cfg, seed=7)
    async with TestBus(services=shop.services, store=shop.cfg.store) as t:
        await place_orders(t, cfg, 60, declined=0.2)
        await t.settle()
        orders = await check_orders(t, shop, 60)
        states = Counter(o.status for o in orders.values())
        reasons = Counter(o.reason for o in orders.values())
        assert states[c.CONFIRMED] > 0 and reasons["card declined"] > 0
        assert reasons[f"out of stock: {SCARCE}"] > 0
        assert shop.payments.counts["transient"] > 0  # faults were injected and retried


@pytest.mark.parametrize("style", STYLES)
async def test_a_payment_provider_that_never_answers_fails_orders_cleanly(style: str) -> None:
    cfg = kit_config(style=style, stock=STOCK, payment_flaky=1.0, attempts=3)
    shop = Shop(cfg)
    async with TestBus(services=shop.services, store=shop.cfg.store) as t:
        await place_orders(t, cfg, 20, declined=0.0, scarce=None)
        await t.settle()
        orders = await check_orders(t, shop, 20)
        assert {o.reason for o in orders.values()} == {UNAVAILABLE}
        assert shop.payments.counts["transient"] == 3 * 20  # every attempt, then gave up
        assert shop.inventory.stock == STOCK

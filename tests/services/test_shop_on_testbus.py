"""The whole shop's order flow on the test kit: retries, a timed-out charge and the
compensations they lead to, in both styles. On the virtual clock (backoffs of seconds,
request timeouts of five) it takes well under a second of wall time; ``make test`` runs
it again on RabbitMQ with ``--bus-url``, in real time (short backoffs: ``kit_config``)."""

from __future__ import annotations

import time

import pytest

from bus.testing import TestBus
from services import contracts as c
from services.config import DECLINED_CARD, GOOD_CARD, STYLES
from services.shop import Shop
from tests.services.conftest import kit_config, kit_virtual

STOCK = {"widget": 100, "scarce": 1}


def new_order(order_id: str, card: str, sku: str = "widget", quantity: int = 2) -> c.CreateOrder:
    return c.CreateOrder(order_id, f"{order_id}@example.com", card, [c.Line(sku, quantity)])


@pytest.mark.parametrize("style", STYLES)
async def test_orders_end_confirmed_or_compensated_through_retries_and_timeouts(
    style: str,
) -> None:
    # in real time the armed timeout is waited out: a short one
    timeout = {} if kit_virtual() else {"request_timeout": 1.0}
    cfg = kit_config(style=style, stock=STOCK, attempts=4, **timeout)
    shop = Shop(cfg)
    t_ = cfg.topic
    started = time.perf_counter()
    async with TestBus(services=shop.services, store=shop.cfg.store) as t:
        if style == "choreography":
            t.fail(t_(c.STOCK_RESERVED), times=2)  # payments fails twice, then charges
        else:
            t.time_out_requests(t_(c.PAYMENT_CHARGE))  # the saga's first charge gets no answer
        for order in (
            new_order("o-good", GOOD_CARD),
            new_order("o-declined", DECLINED_CARD),
            new_order("o-scarce-1", GOOD_CARD, "scarce", 1),
            new_order("o-scarce-2", GOOD_CARD, "scarce", 1),
        ):
            created = await t.request(t_(c.ORDER_CREATE), order, response=c.Order, timeout=5.0)
            assert created.status == c.PENDING
            await t.settle()  # one order at a time: which one meets the fault is fixed
        wall = time.perf_counter() - started

        orders = {k: (o.status, o.reason, o.compensations) for k, o in shop.orders.store.items()}
        assert orders == {
            "o-good": (c.CONFIRMED, "", []),
            "o-declined": (c.FAILED, "card declined", [c.RELEASED_STOCK]),
            "o-scarce-1": (c.CONFIRMED, "", []),
            "o-scarce-2": (c.FAILED, "out of stock: scarce", []),
        }
        assert shop.inventory.stock == {"widget": 98, "scarce": 0}
        assert set(shop.inventory.reservations) == {"o-good", "o-scarce-1"}
        # sent through the outbox: the relay's sends are recorded too
        confirmed = t.published(t_(c.ORDER_CONFIRMED), c.OrderSettled)
        assert [e.order_id for e in confirmed] == ["o-good", "o-scarce-1"]
        assert shop.notifications.sent == {c.CONFIRMED: 2, c.FAILED: 2}
        # the faults happened and were retried: the good order needed more than one try
        first = "stock.reserved" if style == "choreography" else "order.placed"
        tries = [x.attempt for x in t.calls(t_(first)) if x.payload.order_id == "o-good"]
        assert tries == ([1, 2, 3] if style == "choreography" else [1, 2])
        for topic, group in shop.subscriptions():
            assert [d async for d in t.dead_letters(topic, group=group)] == []
        if t.virtual:
            assert t.now >= cfg.backoff  # a backoff of seconds went by on the virtual clock
            # ...in a fraction of it on the wall clock (a real clock would take all of it;
            # a fixed bound fails on a machine busy with other work)
            assert wall < t.now / 3, f"{wall:.3f}s of wall time for {t.now:.1f}s of virtual time"


async def test_a_charge_that_fails_with_no_answer_is_refunded_as_well_as_released() -> None:
    """Payments failing with an error that is not its transient one is no answer: the
    charge may have landed (or a redelivered copy of it may still land), so the saga
    refunds it, not only releases the stock. The refund stands against later charges."""
    cfg = kit_config(style="orchestration", stock=STOCK, attempts=2)
    shop = Shop(cfg)
    t_ = cfg.topic
    async with TestBus(services=shop.services, store=shop.cfg.store) as t:
        t.fail(t_(c.PAYMENT_CHARGE), times=1, error=RuntimeError("provider bug"))
        order = new_order("o-broken", GOOD_CARD)
        await t.request(t_(c.ORDER_CREATE), order, response=c.Order, timeout=5.0)
        await t.settle()
        got = shop.orders.store["o-broken"]
        assert (got.status, got.reason) == (c.FAILED, "payment provider unavailable")
        assert got.compensations == [c.REFUNDED_PAYMENT, c.RELEASED_STOCK]
        assert shop.payments.counts["refunded"] == 1
        assert shop.payments.counts["approved"] == 0
        assert shop.inventory.stock == STOCK and shop.inventory.reservations == {}
        for topic, group in shop.subscriptions():
            assert [d async for d in t.dead_letters(topic, group=group)] == []

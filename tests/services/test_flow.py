"""The order flow end to end on every adapter, in both styles: orders go in through the
HTTP API; every one ends confirmed or failed with its compensation done, none stuck."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

import bus
from services import contracts as c
from services.config import STYLES, Config
from services.gateway import serving
from services.load import Outcome, run_load
from services.payments import UNAVAILABLE
from services.shop import Shop
from tests.conformance.helpers import wait_until
from tests.services.conftest import running_shop, shop_config

SCARCE = "scarce"
STOCK = {"widget": 10_000, "gadget": 10_000, SCARCE: 3}


def check_outcomes(shop: Shop, outcomes: list[Outcome]) -> None:
    """Every order final, each failure compensated, and the stock adds up exactly."""
    assert [o for o in outcomes if not o.final] == []
    for out in outcomes:
        if out.status == c.CONFIRMED:
            assert out.reason == "" and out.compensations == []
        elif out.reason.startswith("out of stock"):
            assert out.compensations == []  # nothing was reserved
            assert SCARCE in out.reason
        else:  # failed after the reservation: it was given back
            assert out.reason in ("card declined", UNAVAILABLE), out.reason
            assert c.RELEASED_STOCK in out.compensations
    confirmed = {o.order_id for o in outcomes if o.status == c.CONFIRMED}
    assert set(shop.inventory.reservations) == confirmed
    taken: Counter[str] = Counter()
    for out in outcomes:
        if out.status == c.CONFIRMED:
            for line in out.body["lines"]:
                taken[line["sku"]] += line["quantity"]
    assert shop.inventory.stock == {sku: n - taken[sku] for sku, n in STOCK.items()}
    store = shop.orders.store
    assert {o.order_id: o.status for o in outcomes} == {k: v.status for k, v in store.items()}


async def dead_letter_count(cfg: Config, shop: Shop) -> int:
    found = 0
    async with bus.Bus(cfg.url) as b:
        for topic, group in shop.subscriptions():
            found += len([d async for d in b.dead_letters(topic, group=group)])
    return found


@pytest.mark.parametrize("style", STYLES)
async def test_every_order_ends_confirmed_or_compensated(shop_url: str, style: str) -> None:
    cfg = shop_config(shop_url, style=style, stock=STOCK, payment_flaky=0.3)
    async with running_shop(cfg) as (shop, base_url):
        outcomes = await run_load(
            base_url, cfg.api_key, orders=60, concurrency=8, declined=0.2, scarce=SCARCE
        )
        check_outcomes(shop, outcomes)
        states = Counter(o.status for o in outcomes)
        reasons = Counter(o.reason for o in outcomes)
        assert states[c.CONFIRMED] > 0 and reasons["card declined"] > 0
        assert shop.payments.counts["transient"] > 0  # faults were injected and retried
        # every final state was told to the customer
        await wait_until(lambda: sum(shop.notifications.sent.values()) >= len(outcomes))
        assert shop.notifications.sent == Counter(o.status for o in outcomes)
        assert await dead_letter_count(cfg, shop) == 0


@pytest.mark.parametrize("style", STYLES)
async def test_a_payment_provider_that_never_answers_fails_orders_cleanly(
    memory_url: str, style: str
) -> None:
    cfg = shop_config(memory_url, style=style, stock=STOCK, payment_flaky=1.0, attempts=3)
    async with running_shop(cfg) as (shop, base_url):
        outcomes = await run_load(base_url, cfg.api_key, orders=20, declined=0.0)
        check_outcomes(shop, outcomes)
        assert {o.reason for o in outcomes} == {UNAVAILABLE}
        assert shop.payments.counts["transient"] == 3 * 20  # every attempt, then gave up
        assert shop.inventory.stock == STOCK
        assert await dead_letter_count(cfg, shop) == 0


async def test_orchestration_without_payments_refunds_and_releases_then_refunds_later(
    memory_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Charges that never get a reply end the saga on its last attempt: the stock is
    released, and a refund (the charge may have happened) waits in payments' queue until
    payments comes back."""
    cfg = shop_config(
        memory_url, style="orchestration", stock=STOCK, attempts=2, request_timeout=0.3
    )
    shop = Shop(cfg)
    no_payments = [s for s in shop.services if s is not shop.payments.service]
    async with shop.bus([shop.payments.service]):
        pass  # payments ran once, so its queues exist; now it is down
    async with (
        shop.bus(no_payments),
        serving(cfg) as base_url,
    ):
        outcomes = await run_load(base_url, cfg.api_key, orders=10, declined=0.0)
        check_outcomes(shop, outcomes)
        for out in outcomes:
            assert out.reason == UNAVAILABLE
            assert out.compensations == [c.REFUNDED_PAYMENT, c.RELEASED_STOCK]
        assert shop.payments.counts["refunded"] == 0
        counts = shop.payments.counts
        caplog.set_level(logging.INFO, logger="bus.dispatch")

        def charges_dropped() -> int:
            # The bus skips a request whose caller gave up; a charge that slips past it
            # is refused by its own expires_at. Either way none is made.
            skipped = caplog.text.count("its caller stopped waiting")
            return skipped + counts["expired"]

        async with shop.bus([shop.payments.service]):
            await wait_until(lambda: counts["refunded"] == 10 and charges_dropped() == 2 * 10)
        assert counts["approved"] == 0

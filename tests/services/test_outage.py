"""Payments down, then back: the orchestrated shop fails its orders cleanly through the
HTTP API and refunds once payments returns. In real time on the embedded broker, with
the services on buses of their own (payments stops and starts again mid-test, which a
single ``TestBus`` cannot do)."""

from __future__ import annotations

import logging

import pytest

from services import contracts as c
from services.gateway import serving
from services.load import run_load
from services.payments import UNAVAILABLE
from services.shop import Shop
from tests.conformance.helpers import wait_until
from tests.services.conftest import shop_config

STOCK = {"widget": 10_000, "gadget": 10_000}


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
        assert [o for o in outcomes if not o.final] == []
        for out in outcomes:
            assert out.status == c.FAILED and out.reason == UNAVAILABLE
            assert out.compensations == [c.REFUNDED_PAYMENT, c.RELEASED_STOCK]
        assert {k: v.status for k, v in shop.orders.store.items()} == {
            o.order_id: o.status for o in outcomes
        }
        assert shop.inventory.reservations == {}
        assert shop.inventory.stock == STOCK  # every reservation was given back
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

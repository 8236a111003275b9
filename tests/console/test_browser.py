"""The console in a real browser (Debian's chromium, driven by Playwright; no browser is
ever downloaded): the shop and its gateway run with the console beside them, as ``python
-m services.demo --serve`` runs them; the page shows the six services live (the gateway
announcing itself), a payment that fails while the provider is down shows in the flow
chart and as a dead letter, and replaying it from the page (its own button, after a
confirmation) settles the order. Screenshots are kept as test artefacts in
``$BUS_TEST_ARTIFACTS`` (default ``.pytest_cache/artifacts``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from playwright.sync_api import Browser, Page, expect, sync_playwright

from services import contracts as c
from services.config import Config
from services.demo import shop_with_console
from services.gateway import serving
from services.shop import Shop
from tests.conformance.helpers import unique
from tests.console.conftest import TOKEN

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BUS_TEST_ARTIFACTS", ROOT / ".pytest_cache" / "artifacts"))
WAIT = 30_000  # ms: the machine is small and busy


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the browser tests: starting one is the slow part. Module
    scope, not session: Playwright's sync API holds an event loop in this thread while it
    runs, and the anyio tests of other modules need the thread free."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run tools/ensure-chromium.sh (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


class RunningShop:
    def __init__(self, portal: BlockingPortal, shop: Shop, bus: Any, address: str) -> None:
        self.portal, self.shop, self.bus, self.address = portal, shop, bus, address

    def topic(self, name: str) -> str:
        return self.shop.cfg.topic(name)

    def request(self, topic: str, payload: object) -> c.Order:
        async def ask() -> c.Order:
            order: c.Order = await self.bus.request(
                self.topic(topic), payload, response=c.Order, timeout=20
            )
            return order

        return self.portal.call(ask)


@contextlib.asynccontextmanager
async def shop_and_gateway(shop: Shop) -> AsyncIterator[tuple[Any, str]]:
    """As ``python -m services.demo --serve`` runs them: the shop, the console, and the
    gateway (which announces itself)."""
    async with (
        shop_with_console(shop, token=TOKEN, presence_interval=0.3) as (b, address),
        serving(shop.cfg),
    ):
        yield b, address


@pytest.fixture
def shop() -> Iterator[RunningShop]:
    """The shop (choreography, memory://, the provider able to fail), its gateway and the
    console, on an event loop in a thread of their own; the test drives the browser from
    this one."""
    cfg = Config(url=f"memory://{unique('console-shop')}", prefix="web", attempts=2, backoff=0.05)
    shop = Shop(cfg, seed=1)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(shop_and_gateway(shop)) as (b, address),
    ):
        yield RunningShop(portal, shop, b, address.split("#", 1)[0])


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_the_console_shows_the_shop_and_replays_a_failed_payment(
    browser: Browser, shop: RunningShop
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    origin = shop.address.rstrip("/")
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(origin) else foreign.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # Log in: a wrong token is refused, the right one opens the console.
    page.goto(shop.address)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-the-token")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("wrong token")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#app")).to_be_visible()

    # Six services live: the five of the shop and the gateway.
    live = page.locator("#services tbody tr[data-status=live]")
    expect(live).to_have_count(6, timeout=WAIT)
    names = {live.nth(i).get_attribute("data-service") for i in range(6)}
    assert names == {
        f"web-{s}"
        for s in ("orders", "inventory", "payments", "notifications", "checkout", "gateway")
    }

    # The payment provider goes down: the order's payment fails, is retried, dead-lettered.
    async def provider_down(*args: object, **kwargs: object) -> c.ChargeResult:
        raise ConnectionError("payment provider unreachable")

    shop.shop.payments.charge = provider_down  # type: ignore[method-assign]
    line = c.Line("widget", 2)
    order = shop.request(
        c.ORDER_CREATE, c.CreateOrder("o-web-1", "a@example.com", "4242424242424242", [line])
    )
    assert order.status == c.PENDING

    reserved = f'.chart[data-topic="{shop.topic(c.STOCK_RESERVED)}"][data-group="web-payments"]'
    expect(page.locator(f"{reserved} .totals [data-kind=dead_lettered] b")).to_have_text(
        "1", timeout=WAIT
    )
    expect(page.locator(f"{reserved} .totals [data-kind=failed] b")).to_have_text("2")
    expect(page.locator(f"{reserved} polyline[data-kind=dead_lettered]")).to_have_count(1)
    shot(page, "console-system.png")

    # It waits as a dead letter, with its exception, stack trace and body.
    page.click("#tabs a[data-tab=dead-letters]")
    row = page.locator(f'#dead-subs tr[data-topic="{shop.topic(c.STOCK_RESERVED)}"]')
    expect(row).to_have_attribute("data-count", "1", timeout=WAIT)
    row.locator("button").click()
    letter = page.locator("#letters .letter")
    expect(letter).to_have_count(1)
    expect(letter.locator(".exc")).to_have_text(
        "builtins.ConnectionError: payment provider unreachable"
    )
    expect(letter.locator("pre.body")).to_contain_text('"order_id": "o-web-1"')
    expect(letter.locator("pre.stack")).to_contain_text("provider_down")
    shot(page, "console-dead-letters.png")

    # Replay asks first; cancelling leaves it where it is.
    page.click("#replay-all")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(
        "Replay this dead letter of group web-payments"
    )
    page.click("#confirm-no")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(row).to_have_attribute("data-count", "1")

    # The provider is back: replaying the letter (its own button) moves it back and the
    # order is paid.
    del shop.shop.payments.charge
    letter.locator("button.replay-one").click()
    expect(page.locator("#confirm-text")).to_contain_text(
        f"Replay dead letter {letter.get_attribute('data-id')} of group web-payments"
    )
    page.click("#confirm-yes")
    expect(page.locator("#toast")).to_have_text("Replayed 1 dead letter to group web-payments.")
    expect(row).to_have_attribute("data-count", "0", timeout=WAIT)
    expect(page.locator("#letters .letter")).to_have_count(0)
    settled = shop.request(c.ORDER_GET, c.GetOrder("o-web-1", wait=10))
    assert settled.status == c.CONFIRMED
    page.click("#tabs a[data-tab=system]")
    expect(page.locator(f"{reserved} .totals [data-kind=handled] b")).to_have_text(
        "1", timeout=WAIT
    )

    # The contracts, rendered from the services' AsyncAPI document.
    page.click("#tabs a[data-tab=contracts]")
    payments = page.locator('.contract-service[data-service="web-payments"]')
    expect(payments).to_contain_text("charges cards and refunds them")
    expect(payments.locator(".ops li")).to_contain_text(re.compile("receives.*StockReserved"))
    expect(page.locator("#schema-Charge, #schema-StockReserved").first).to_be_visible()

    assert foreign == [], f"the page fetched from elsewhere: {foreign}"
    assert errors == []
    page.close()

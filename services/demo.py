"""The shop, end to end: every service in one process, the gateway on a free loopback
port, and a load of orders through its HTTP API, some with failing payments; then a
summary. ``python -m services.demo [--url URL] [--style S] [--orders N] [--serve]``.

``--serve`` also starts the web console (``bus.console``) beside the shop before the load,
prints its address (with the token: ``$BUS_CONSOLE_TOKEN``, or one made up), and keeps
both serving after the summary until Ctrl-C.

``--url`` (or ``$BUS_URL``) moves it to RabbitMQ or Kafka unchanged. Each run names its
topics and groups afresh (prefix ``demo-XXXXXX``) so an earlier run's messages never mix
in; a persistent broker keeps those (drained) queues or topics afterwards. Exits 1 if any
order did not reach a final state or the stock does not add up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import anyio

import bus
from services import contracts as c
from services.config import STYLES, Config, Style
from services.gateway import serving
from services.load import Outcome, client_for, percentile, run_load
from services.orders import service as orders
from services.shop import Shop
from services.stats import BusCounters

SCARCE = "limited-edition"
# `orders` is here under its old name so `bus run services.demo:orders` (the CLI's help
# example) still runs a real service.
__all__ = ["cli", "main", "orders"]


@contextlib.asynccontextmanager
async def shop_with_console(
    shop: Shop, *, token: str | None = None, port: int = 0, presence_interval: float = 1.0
) -> AsyncIterator[tuple[bus.Bus, str]]:
    """The shop's bus and the console beside it, on the shop's broker; yields the bus and
    the address to open (the token after ``#`` logs the browser in). The gateway, served
    beside them, announces itself: the console lists it once it runs."""
    from bus.console import Auth, Console, create_app, serving, token_from_env

    if token is None:
        token, _ = token_from_env(generate=True)
    b = shop.bus(presence_interval=presence_interval)
    console = Console(shop.cfg.url, Auth(token), shop.services, step=1.0)
    # The console first, so it hears the shop's first announcements: its flow starts at zero.
    async with serving(create_app(console), port=port) as address, b:
        yield b, f"{address}/#token={token}"


def demo_config(args: argparse.Namespace, style: Style) -> Config:
    cfg = Config.from_env()
    run = uuid.uuid4().hex[:6]
    changes: dict[str, object] = {
        "style": style,
        "stock": {**cfg.stock, SCARCE: args.scarce_stock},
        "payment_flaky": args.flaky,
        # a run of its own, so a persistent broker's old messages never mix in
        "prefix": f"{cfg.prefix}-demo-{run}" if cfg.prefix else f"demo-{run}",
    }
    if args.url:
        changes["url"] = args.url
    return cfg.replace(**changes)


async def show_bad_input(base_url: str, api_key: str) -> None:
    """One of each mistake a client can make, and what the gateway answers."""
    body = {"customer": "x@example.com", "card": "4242424242424242", "lines": []}
    async with client_for(base_url, api_key) as client:
        cases = [
            ("no API key", client.post("/orders", json=body, headers={"x-api-key": ""})),
            ("malformed JSON", client.post("/orders", content=b"{not json")),
            ("no lines", client.post("/orders", json=body)),
            ("unknown order", client.get("/orders/no-such-order")),
        ]
        for label, call in cases:
            response = await call
            print(f"  {label:<15} -> {response.status_code} {response.json()['error'][:70]}")


async def dead_letters(b: bus.Bus, shop: Shop) -> int:
    found = 0
    for topic, group in shop.subscriptions():
        async for _ in b.dead_letters(topic, group=group):
            found += 1
    return found


def stock_adds_up(shop: Shop, outcomes: list[Outcome]) -> bool:
    """Remaining stock is the initial stock less what confirmed orders took, exactly."""
    taken: Counter[str] = Counter()
    for out in outcomes:
        if out.status == c.CONFIRMED:
            for line in out.body["lines"]:
                taken[line["sku"]] += line["quantity"]
    expected = {sku: n - taken[sku] for sku, n in shop.cfg.stock.items()}
    return expected == shop.inventory.stock


def summarize(shop: Shop, outcomes: list[Outcome], seconds: float, counters: BusCounters) -> None:
    states = Counter(out.status for out in outcomes)
    reasons = Counter(out.reason for out in outcomes if out.status == c.FAILED)
    latencies = [out.latency for out in outcomes if out.final]
    print(f"\n{len(outcomes)} orders in {seconds:.1f}s ({shop.cfg.style}):")
    for state, n in states.most_common():
        print(f"  {state:<10} {n}")
    for reason, n in reasons.most_common():
        print(f"    failed: {reason:<32} {n}")
    print(f"  retries        {counters.describe('retried', shop.cfg.topic(''))}")
    print(f"  payments       {dict(shop.payments.counts)}")
    print(f"  notifications  {dict(shop.notifications.sent)}")
    print(
        f"  order latency  p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )


async def run(args: argparse.Namespace, style: Style, counters: BusCounters) -> bool:
    """The shop in one style under load; True if every order ended and stock adds up."""
    cfg = demo_config(args, style)
    shop = Shop(cfg, seed=args.seed)
    async with contextlib.AsyncExitStack() as stack:
        if args.serve:
            b, console = await stack.enter_async_context(shop_with_console(shop))
        else:
            b = await stack.enter_async_context(shop.bus())
        base_url = await stack.enter_async_context(serving(cfg, port=args.port))
        print(f"\n== {style}: shop on {b!r}\ngateway on {base_url} (X-API-Key: {cfg.api_key})")
        if args.serve:
            print(f"console on {console}")
        print("bad input:")
        await show_bad_input(base_url, cfg.api_key)
        started = time.perf_counter()
        outcomes = await run_load(
            base_url,
            cfg.api_key,
            orders=args.orders,
            concurrency=args.concurrency,
            declined=args.declined,
            scarce=SCARCE,
            seed=args.seed,
        )
        summarize(shop, outcomes, time.perf_counter() - started, counters)
        letters = await dead_letters(b, shop)
        stuck = [out for out in outcomes if not out.final]
        consistent = stock_adds_up(shop, outcomes)
        print(f"  dead letters   {letters}")
        print(f"  not final      {len(stuck)}")
        print(f"  stock adds up  {'yes' if consistent else 'NO'}: {shop.inventory.stock}")
        if args.serve:
            print(f"\nserving until Ctrl-C; try:\n  curl {base_url}/health")
            print(
                f'  curl -H \'X-API-Key: {cfg.api_key}\' -d \'{{"customer": "me@example.com", '
                f'"card": "4242424242424242", "lines": [{{"sku": "widget", "quantity": 1}}]}}\' '
                f"{base_url}/orders"
            )
            await anyio.sleep_forever()
    return not stuck and consistent


async def main(args: argparse.Namespace) -> int:
    counters = BusCounters.install()
    styles: tuple[Style, ...] = STYLES
    if args.style or os.environ.get("SHOP_STYLE"):
        styles = (args.style or Config.from_env().style,)
    if args.serve:
        styles = styles[:1]
    ok = True
    for style in styles:
        ok = await run(args, style, counters) and ok
    print("\ndemo done" if ok else "\ndemo FAILED: see above")
    return 0 if ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="broker URL (default $BUS_URL or memory://)")
    parser.add_argument(
        "--style", choices=STYLES, default=None, help="default $SHOP_STYLE, else both in turn"
    )
    parser.add_argument("--orders", type=int, default=300, help="orders per style")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once")
    parser.add_argument("--flaky", type=float, default=0.2, help="share of charges that fail")
    parser.add_argument("--declined", type=float, default=0.1, help="share of declined cards")
    parser.add_argument("--scarce-stock", type=int, default=10, help=f"units of {SCARCE}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument(
        "--serve", action="store_true", help="start the console too; keep serving after the load"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    try:
        sys.exit(anyio.run(main, args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    cli()

"""The shop on a three-node cluster with quorum queues, the node its buses are on killed
mid-run: every order ends confirmed or failed (compensated), none stuck; `bus status`
still lists the shop's services through the URL naming every node.

The clients behave as the API asks (services/gateway/app.py): each order is POSTed with
an Idempotency-Key, and a 502/503/504 (the bus failing over under the gateway) is POSTed
again with the same key, which returns the order the first POST made if it made one.

What is asserted is the issue's "every order ends confirmed or failed, none stuck", in
the client's view and the orders store's, and the stricter accounting of tests/services:
stock is held exactly for the confirmed orders. A failover redelivers messages whose
handling already went on elsewhere, so two chains of retries may run for one order; the
payment provider answers every charge of an order the same way (services/payments.py),
and a saga records its outcome before it compensates (services/checkout.py), so both
chains reach the same outcome. An order may stay pending only while RabbitMQ 3.10.8
holds its retries in a delay queue past their time (README, "Running on a cluster"): the
test then checks that the broker holds at least that many messages, and reports it."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import anyio
import pytest

from brokers.rabbitmq_cluster import RabbitCluster
from services import contracts as c
from services.config import STYLES
from services.load import Outcome, make_order, place_until_answered
from tests.cluster.stream import held_in_delay_queues, recover_stranded, wait_for
from tests.conformance.helpers import unique
from tests.services.conftest import running_shop, shop_config
from tests.services.test_flow import SCARCE, STOCK, dead_letter_count

ORDERS = 40
CONCURRENCY = 8
DEADLINE = 120.0  # for all the orders; each takes ~15 s at worst here

pytestmark = pytest.mark.slow


def bus_status(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bus", "--url", url, "status", "--window", "2.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("style", STYLES)
async def test_the_shop_loses_no_order_when_its_node_dies(
    rabbit_cluster: RabbitCluster, style: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_PRESENCE_INTERVAL", "1")  # so `bus status` hears them soon
    url = rabbit_cluster.url(exchange=unique("shop"), queue_type="quorum")
    cfg = shop_config(url, style=style, stock=STOCK, payment_flaky=0.3)
    node = rabbit_cluster.nodes[0]  # every bus of the shop starts on the first node
    outcomes: list[Outcome] = []

    async def load(base_url: str) -> None:
        rng = random.Random(1)
        todo = iter([make_order(rng, n, declined=0.2, scarce=SCARCE) for n in range(ORDERS)])

        async def worker() -> None:
            for body in todo:
                outcomes.append(
                    await place_until_answered(base_url, cfg.api_key, body, deadline=60.0)
                )

        async with anyio.create_task_group() as workers:
            for _ in range(CONCURRENCY):
                workers.start_soon(worker)

    recovered: dict[str, int] = {}  # retries the broker stranded, and the operator freed
    async with running_shop(cfg) as (shop, base_url):
        with anyio.fail_after(DEADLINE):  # a stuck order fails the test, not the run
            async with anyio.create_task_group() as tg:
                tg.start_soon(load, base_url)
                await wait_for(lambda: len(shop.orders.store) >= ORDERS // 3, 60, "orders placed")
                placed_at_kill = len(shop.orders.store)
                await anyio.to_thread.run_sync(node.kill)
                loaded = anyio.Event()
                tg.start_soon(recover_stranded, rabbit_cluster, recovered, loaded)
                while len(outcomes) < ORDERS:
                    await anyio.sleep(0.1)
                loaded.set()
        refusals = [code for o in outcomes for code in o.http_errors]
        print(
            f"\n[shop {style}] node killed after {placed_at_kill} of {ORDERS} orders placed; "
            f"{len(outcomes)} orders, {Counter(o.status for o in outcomes)}, "
            f"HTTP refusals retried {Counter(refusals)}, slowest order "
            f"{max(o.latency for o in outcomes):.1f}s"
        )
        confirmed = {o.order_id for o in outcomes if o.status == c.CONFIRMED}
        unreserved = confirmed - set(shop.inventory.reservations)
        print(f"[shop {style}] payments {dict(shop.payments.counts)}")
        print(f"[shop {style}] retries stranded by the broker and recovered: {recovered}")
        assert placed_at_kill < ORDERS, "the kill came mid-run"
        stuck = {o.order_id for o in outcomes if not o.final}
        if stuck:  # only where RabbitMQ 3.10.8 holds their retries past their time
            held = await held_in_delay_queues(rabbit_cluster, cfg.prefix)
            print(f"[shop {style}] {len(stuck)} orders pending, {held} retries held by RabbitMQ")
            assert held >= len(stuck), f"{len(stuck)} orders stuck and only {held} held"
        store = {k: v.status for k, v in shop.orders.store.items()}
        assert store == {o.order_id: o.status for o in outcomes}, "the store agrees"
        assert all(o.reason for o in outcomes if o.status == c.FAILED)
        assert unreserved == set(), "stock is held for every confirmed order"
        assert set(shop.inventory.reservations) - stuck == confirmed, "and for no other"
        listed = await anyio.to_thread.run_sync(bus_status, url)
        for service in shop.services:
            assert service.name in listed, listed
        assert await dead_letter_count(cfg, shop) == 0

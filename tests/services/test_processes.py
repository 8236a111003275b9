"""The shop as a deployment runs it: one process per service started with ``bus run``
(the gateway with ``python -m services.gateway``), two instances each of orders,
inventory and payments sharing one PostgreSQL store, and one instance of each of those
three killed with SIGKILL mid-load: every order still ends confirmed or failed, and the
accounting in the store is exact: stock is held for the confirmed orders and no other,
the units left are the initial stock less what they took, and the provider charged the
confirmed orders and no other.

The clients behave as the API asks: a POST answered 502/503/504 (its orders instance
died with the request) is sent again with the same Idempotency-Key."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from services import contracts as c
from services.config import STYLES, Config, Style
from services.load import Outcome, make_order, place_until_answered
from services.payments import UNAVAILABLE
from tests.services.conftest import shop_config, wait_healthy
from tests.store.conftest import new_schema
from tests.store.helpers import query

START_DEADLINE = 60.0
REASONS = {"", "card declined", UNAVAILABLE}
STOCK = {"widget": 10_000, "gadget": 10_000}
ORDERS = 80
SCALED = ("orders", "inventory", "payments")


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def deployment(cfg: Config, logs: Path) -> Iterator[tuple[dict[str, Process], str]]:
    """Every service in a process of its own; yields them by name and the gateway URL."""
    env = {**os.environ, **cfg.to_env(), "PYTHONPATH": os.getcwd()}
    run = [sys.executable, "-m", "bus", "run", "--url", str(cfg.url)]
    specs = {f"{module}-{n}": module for module in SCALED for n in (1, 2)}
    specs["notifications"] = "notifications"
    if cfg.style == "orchestration":
        specs["checkout"] = "checkout"
    store = ["--store", str(cfg.store)]
    procs = {}
    for name, module in specs.items():
        stateful = module in SCALED or module == "checkout"  # the saga records its outcome
        argv = [*run, *(store if stateful else []), f"services.{module}:service"]
        procs[name] = Process(name, argv, env, logs)
    port = free_port()
    gateway = [sys.executable, "-m", "services.gateway", "--port", str(port)]
    procs["gateway"] = Process("gateway", gateway, env, logs)
    try:
        yield procs, f"http://127.0.0.1:{port}"
    finally:
        for proc in procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.stop()


async def wait_ready(procs: dict[str, Process]) -> None:
    """Until every service is subscribed (``bus run`` says "running") and the gateway
    listens; a process that exits meanwhile fails the test with its log."""
    waiting = dict(procs)
    with anyio.fail_after(START_DEADLINE):
        while waiting:
            for name, proc in list(waiting.items()):
                if proc.popen.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.popen.returncode}:\n{proc.text()}")
                text = proc.text()
                if "\nrunning " in f"\n{text}" or "gateway listening on" in text:
                    del waiting[name]
            await anyio.sleep(0.05)


async def kill_when_busy(procs: dict[str, Process], charges: int) -> float:
    """SIGKILL the first instance of orders, inventory and payments at once, when each
    has worked on orders and payments-1 has charged ``charges``; returns when."""
    signs = {"orders-1": " placed: ", "inventory-1": ": reserved", "payments-1": ": charged "}
    wanted = {name: 1 for name in signs} | {"payments-1": charges}
    with anyio.fail_after(START_DEADLINE):
        while any(procs[n].text().count(sign) < wanted[n] for n, sign in signs.items()):
            await anyio.sleep(0.01)
    for name in signs:
        os.kill(procs[name].popen.pid, signal.SIGKILL)
    return time.monotonic()


async def run_load(base_url: str, api_key: str, outcomes: list[Outcome]) -> None:
    rng = random.Random(1)
    todo = iter([make_order(rng, n, declined=0.1) for n in range(ORDERS)])

    async def worker() -> None:
        for body in todo:
            outcomes.append(await place_until_answered(base_url, api_key, body, deadline=90.0))

    async with anyio.create_task_group() as workers:
        for _ in range(8):
            workers.start_soon(worker)


async def check_accounts(
    store: str, outcomes: list[Outcome], procs: dict[str, Process] | None = None
) -> None:
    """The store agrees with the clients, and holds, stock and charges add up exactly.
    ``procs``: whose logs to quote for an order whose refund never landed."""
    statuses = dict(await query(store, "SELECT order_id, status FROM shop_orders"))
    assert statuses == {o.order_id: o.status for o in outcomes}, "the store agrees"
    confirmed = {o.order_id for o in outcomes if o.status == c.CONFIRMED}
    holds = await query(store, "SELECT order_id FROM shop_holds WHERE state = 'reserved'")
    assert {h[0] for h in holds} == confirmed, "stock is held for the confirmed orders only"
    taken: Counter[str] = Counter()
    for out in outcomes:
        if out.status == c.CONFIRMED:
            for line in out.body["lines"]:
                taken[line["sku"]] += line["quantity"]
    left = dict(await query(store, "SELECT sku, units FROM shop_stock"))
    assert left == {sku: n - taken[sku] for sku, n in STOCK.items()}, "the stock adds up"
    # A charge the saga never heard back from is refunded: let those refunds land.
    unrefunded: set[str] = set()
    with anyio.move_on_after(30):
        while True:
            charged = await query(store, "SELECT order_id FROM shop_charges WHERE approved = 1")
            assert {r[0] for r in charged} >= confirmed, "every confirmed order was charged"
            unrefunded = {r[0] for r in charged} - confirmed
            if not unrefunded:
                break
            await anyio.sleep(0.2)
    if unrefunded:  # say where each one's refund went, from every process's log
        lines = [
            f"{name}: {line}"
            for name, proc in (procs or {}).items()
            for line in proc.text().splitlines()
            if any(order in line for order in unrefunded)
        ]
        raise AssertionError(
            f"charged, not confirmed and not refunded within 30 s: {sorted(unrefunded)}\n"
            + "\n".join(lines[-200:])
        )
    assert await query(store, "SELECT count(*) FROM bus_outbox_dead") == [(0,)]


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("adapter", ["rabbitmq", "kafka"])
async def test_an_instance_of_each_stateful_service_killed_mid_load_loses_no_order(
    adapter: str, style: Style, request: pytest.FixtureRequest, tmp_path: Path, pg_database: str
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    store = await new_schema(pg_database)
    cfg = shop_config(
        url, style=style, payment_flaky=0.2, request_timeout=5.0, store=store, stock=STOCK
    )
    outcomes: list[Outcome] = []
    with deployment(cfg, tmp_path) as (procs, base_url):
        await wait_ready(procs)
        await wait_healthy(base_url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_load, base_url, cfg.api_key, outcomes)
            await kill_when_busy(procs, charges=5)
            assert len(outcomes) < ORDERS, "the kill came mid-load"
        for name, proc in procs.items():
            if name.endswith("-1"):
                assert proc.popen.wait(5) == -signal.SIGKILL
            else:
                assert proc.popen.poll() is None, f"{name} died:\n{proc.text()}"
        stuck = [o for o in outcomes if not o.final]
        assert stuck == [], [(o.order_id, o.status, o.http_errors) for o in stuck]
        assert len(outcomes) == ORDERS
        assert {o.reason for o in outcomes} <= REASONS
        assert Counter(o.status for o in outcomes)[c.CONFIRMED] > 0
        for name in ("orders-2", "inventory-2", "payments-2"):  # the survivors took over
            assert procs[name].text().count("order ") > 0, name
        await check_accounts(store, outcomes, procs)

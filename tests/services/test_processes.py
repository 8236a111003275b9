"""The shop as a deployment runs it: one process per service started with ``bus run``
(the gateway with ``python -m services.gateway``), two payments instances, and one of
them killed with SIGKILL mid-load: every order still ends in a final state.

Only stateless services are scaled: orders and inventory keep their state in memory,
so a second instance of either would split it (see their modules)."""

from __future__ import annotations

import contextlib
import os
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
from services.load import Outcome, run_load
from services.payments import UNAVAILABLE
from tests.services.conftest import shop_config, wait_healthy

START_DEADLINE = 60.0
REASONS = {"", "card declined", UNAVAILABLE}


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
    specs = {
        "orders": "orders",
        "inventory": "inventory",
        "payments-1": "payments",
        "payments-2": "payments",
        "notifications": "notifications",
    }
    if cfg.style == "orchestration":
        specs["checkout"] = "checkout"
    procs = {
        name: Process(name, [*run, f"services.{module}:service"], env, logs)
        for name, module in specs.items()
    }
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


async def kill_when_busy(proc: Process, charges: int) -> float:
    """SIGKILL ``proc`` once it has charged ``charges`` orders; returns when."""
    with anyio.fail_after(START_DEADLINE):
        while proc.text().count(": charged ") < charges:
            await anyio.sleep(0.01)
    os.kill(proc.popen.pid, signal.SIGKILL)
    return time.monotonic()


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("adapter", ["rabbitmq", "kafka"])
async def test_a_payments_instance_killed_mid_load_loses_no_order(
    adapter: str, style: Style, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    cfg = shop_config(url, style=style, payment_flaky=0.2, request_timeout=5.0)
    outcomes: list[Outcome] = []
    with deployment(cfg, tmp_path) as (procs, base_url):
        await wait_ready(procs)
        await wait_healthy(base_url)

        async def load() -> None:
            outcomes.extend(
                await run_load(base_url, cfg.api_key, orders=80, declined=0.1, deadline=90)
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await kill_when_busy(procs["payments-1"], charges=5)
            assert outcomes == []  # the load is still going on
        assert procs["payments-1"].popen.wait(5) == -signal.SIGKILL
        for name, proc in procs.items():
            if name != "payments-1":
                assert proc.popen.poll() is None, f"{name} died:\n{proc.text()}"
        stuck = [o for o in outcomes if not o.final]
        assert stuck == [], [(o.order_id, o.status, o.http_errors) for o in stuck]
        assert len(outcomes) == 80
        assert {o.reason for o in outcomes} <= REASONS
        assert Counter(o.status for o in outcomes)[c.CONFIRMED] > 0
        assert procs["payments-2"].text().count(": charged ") > 0  # the survivor took over

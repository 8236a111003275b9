"""``bus docs`` writes the AsyncAPI document of services; the shop's documents committed
under docs/asyncapi/ are what it writes today (regenerate them when a contract changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.asyncapi import problems

ROOT = Path(__file__).resolve().parents[2]
SHOP = [
    f"services.{name}:service"
    for name in ("orders", "inventory", "payments", "notifications", "checkout")
]
URL = "amqp://guest:guest@localhost:5672/"
# The committed documents, each with the style it documents.
COMMITTED = {"shop.json": "choreography", "shop-orchestration.json": "orchestration"}


def bus_cli(*args: str, style: str = "choreography") -> subprocess.CompletedProcess[str]:
    # The shop's services read their configuration from the environment: pin it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "BUS_"))}
    env["SHOP_STYLE"] = style
    return subprocess.run(
        [sys.executable, "-m", "bus", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def regenerate_command(name: str) -> str:
    return (
        f"SHOP_STYLE={COMMITTED[name]} python -m bus docs {' '.join(SHOP)} --url {URL} "
        f"--title 'The shop ({COMMITTED[name]})' --out docs/asyncapi/{name}"
    )


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_the_committed_shop_document_is_up_to_date(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    style = COMMITTED[name]
    done = bus_cli(
        "docs", *SHOP, "--url", URL, "--title", f"The shop ({style})", "--out", str(out),
        style=style,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fresh = json.loads(out.read_text())
    assert problems(fresh) == []
    committed = ROOT / "docs" / "asyncapi" / name
    assert committed.exists(), f"docs/asyncapi/{name} is missing: {regenerate_command(name)}"
    assert json.loads(committed.read_text()) == fresh, (
        f"docs/asyncapi/{name} is stale: the services changed; regenerate it with\n"
        f"  {regenerate_command(name)}"
    )
    assert "guest:guest" not in committed.read_text()


def test_yaml_to_standard_output() -> None:
    done = bus_cli("docs", "services.payments:service", "--format", "yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('asyncapi: "3.0.0"\n')
    assert "servers" not in done.stdout  # no broker named, none written


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["services.payments"], "name a service as MODULE:ATTRIBUTE"),
        (["no_such_module:service"], "cannot import module 'no_such_module'"),
        (["services.payments:Payments"], "is not a bus.Service"),
        (["services.payments:service", "--out", "/no/such/dir/x.json"], "cannot write"),
    ],
)
def test_mistakes_are_one_line(args: list[str], error: str) -> None:
    done = bus_cli("docs", *args)
    assert done.returncode == 1
    assert error in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

"""What every benchmark shares: the payload, the handler, timing and the report table."""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec


class Order(msgspec.Struct):
    order_id: str
    total_cents: int
    note: str


def make_order(i: int) -> Order:
    return Order(f"o-{i}", i, "x" * 16)


async def handler(order: Order) -> None:
    """The same handler call for the bus and the raw client."""
    if order.total_cents < 0:
        raise ValueError("never")


@dataclass
class Row:
    scenario: str
    unit: str
    bus: float
    raw: float

    @property
    def ratio(self) -> float:
        return self.bus / self.raw if self.raw else float("nan")


async def timed(fn: Callable[[], Awaitable[int]]) -> float:
    """Run ``fn`` (which returns how many operations it did); return operations/s."""
    started = time.perf_counter()
    count = await fn()
    return count / (time.perf_counter() - started)


def table(title: str, rows: list[Row], raw_name: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"| scenario | unit | bus | {raw_name} | bus / raw |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.unit} | {r.bus:,.0f} | {r.raw:,.0f} | {r.ratio:.2f} |")
    lines.append("")
    lines.append(f"Machine: {platform.machine()}, Python {platform.python_version()}.")
    return "\n".join(lines)

"""What every benchmark shares: the payload, the handler, timing and the report table."""

from __future__ import annotations

import asyncio
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


class Item(msgspec.Struct):
    """The payload of the per-broker side-by-side runs (benchmarks.kafka, .rabbitmq)."""

    order_id: str
    total_cents: int
    note: str


class Reply(msgspec.Struct):
    order_id: str
    ok: bool


async def yielding_handler(item: Item) -> None:
    """The work per message, the same on both sides: nothing but an await."""
    await asyncio.sleep(0)


async def answer(item: Item) -> Reply:
    return Reply(item.order_id, True)


def items(n: int) -> list[Item]:
    return [Item(f"o-{i}", i, "a benchmark order of modest size") for i in range(n)]


@dataclass
class Sizes:
    publish: int
    consume: int
    rr1: int
    rr32: int
    rounds: int
    concurrency: int = 1


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

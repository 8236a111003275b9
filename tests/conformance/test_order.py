"""Contract 7: order per key within a group at handler concurrency 1, where declared."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import bus
from bus.transport import Capabilities
from tests.conformance.helpers import Item, wait_until


async def test_order_per_key_at_concurrency_1(
    bus_url: str, publisher: bus.Bus, topic: str, group: str, capabilities: Capabilities
) -> None:
    if not capabilities.ordered_per_key:
        pytest.skip("this adapter declares ordered_per_key=False (competing consumers)")
    seen: dict[str, list[int]] = {}
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item) -> None:
        seen.setdefault(item.text, []).append(item.n)
        if item.n % 7 == 0:
            await anyio.lowlevel.checkpoint()  # let others run mid-stream

    keys = [f"key-{k}" for k in range(5)]
    async with bus.Bus(bus_url, services=[svc]), bus.Bus(bus_url, services=[svc]):
        for n in range(300):
            key = keys[n % len(keys)]
            await publisher.publish(topic, Item(n, key), key=key)
        await wait_until(lambda: sum(len(v) for v in seen.values()) >= 300)
    for key in keys:
        assert seen[key] == sorted(seen[key]), f"{key} arrived out of order"
        assert len(seen[key]) == 60

"""Small services the kit's own tests run: a three-step cascade (orders -> inventory ->
shipping), each step a service of its own."""

from __future__ import annotations

import msgspec

import bus


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    quantity: int


class Reserved(msgspec.Struct, frozen=True):
    order_id: str


class Shipped(msgspec.Struct, frozen=True):
    order_id: str
    attempt: int


def cascade(prefix: str, *, retry: bus.Retry | None = None) -> list[bus.Service]:
    """``<prefix>.placed`` -> inventory publishes ``<prefix>.reserved`` -> shipping
    publishes ``<prefix>.shipped`` -> audit takes it. Names carry ``prefix`` so tests
    sharing a real broker never meet."""
    inventory = bus.Service(f"{prefix}-inventory")
    shipping = bus.Service(f"{prefix}-shipping")
    audit = bus.Service(f"{prefix}-audit")
    retry = retry or bus.Retry(attempts=3, backoff=0.05)

    @inventory.subscribe(f"{prefix}.placed", retry=retry)
    async def reserve(event: Placed, ctx: bus.Context) -> None:
        if event.quantity <= 0:
            raise bus.Reject(f"quantity {event.quantity} is not positive")
        await ctx.publish(f"{prefix}.reserved", Reserved(event.order_id), key=event.order_id)

    @shipping.subscribe(f"{prefix}.reserved", retry=retry)
    async def ship(event: Reserved, ctx: bus.Context) -> None:
        await ctx.publish(f"{prefix}.shipped", Shipped(event.order_id, ctx.attempt))

    @audit.subscribe(f"{prefix}.shipped", retry=retry)
    async def record(event: Shipped) -> None:
        pass

    return [inventory, shipping, audit]

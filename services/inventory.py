"""inventory: reserves stock for an order and releases it again when a later step fails.

Every operation is keyed by order id and idempotent, so a redelivered message or a
repeated request changes nothing. A release is remembered: a reservation that arrives
after its order's release (a late, retried request) is refused rather than leaked.

Stock lives in this process's memory, so a deployment runs ONE inventory instance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import bus
from services import contracts as c
from services.config import Config

log = logging.getLogger("services.inventory")


class Inventory:
    """The stock of one deployment and the ``bus.Service`` (``.service``) that keeps it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stock: dict[str, int] = dict(cfg.stock)
        self.reservations: dict[str, list[c.Line]] = {}
        self.refused: dict[str, str] = {}  # order id -> why it got no stock
        self.released: set[str] = set()
        self.service = bus.Service(cfg.name("inventory"))
        t, retry = cfg.topic, cfg.retry()
        if cfg.style == "choreography":
            self.service.subscribe(t(c.ORDER_PLACED), retry=retry)(self.on_placed)
            self.service.subscribe(t(c.PAYMENT_FAILED), retry=retry)(self.on_payment_failed)
        else:
            self.service.respond(t(c.STOCK_RESERVE), concurrency=64)(self.on_reserve)
            self.service.respond(t(c.STOCK_RELEASE), concurrency=64)(self.on_release)

    # -- the two operations (synchronous: no other handler runs in between) --------------

    def reserve(self, order_id: str, lines: list[c.Line]) -> str:
        """Reserve ``lines`` for ``order_id``; return "" on success, else why not."""
        if order_id in self.reservations:
            return ""
        if order_id in self.released:
            return c.ALREADY_RELEASED
        if order_id in self.refused:
            return self.refused[order_id]
        wanted: dict[str, int] = {}
        for line in lines:
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        short = [sku for sku, n in wanted.items() if self.stock.get(sku, 0) < n]
        if short:
            self.refused[order_id] = reason = f"out of stock: {', '.join(sorted(short))}"
            return reason
        for sku, n in wanted.items():
            self.stock[sku] -= n
        self.reservations[order_id] = list(lines)
        return ""

    def release(self, order_id: str) -> bool:
        """Give back what ``order_id`` holds; True if it held anything."""
        self.released.add(order_id)
        lines = self.reservations.pop(order_id, None)
        for line in lines or ():
            self.stock[line.sku] += line.quantity
        return lines is not None

    def reserved_quantities(self) -> Mapping[str, int]:
        """Units per sku held by reservations now."""
        held: dict[str, int] = {}
        for lines in self.reservations.values():
            for line in lines:
                held[line.sku] = held.get(line.sku, 0) + line.quantity
        return held

    # -- choreography: react to events ----------------------------------------------------

    async def on_placed(self, event: c.OrderPlaced, ctx: bus.Context) -> None:
        t = self.cfg.topic
        refusal = self.reserve(event.order_id, event.lines)
        if refusal:
            log.info("order %s: %s", event.order_id, refusal)
            failed = c.StepFailed(event.order_id, refusal)
            await ctx.publish(t(c.STOCK_REJECTED), failed, key=event.order_id)
            return
        reserved = c.StockReserved(event.order_id, event.card, event.total_cents)
        await ctx.publish(t(c.STOCK_RESERVED), reserved, key=event.order_id)

    async def on_payment_failed(self, event: c.StepFailed, ctx: bus.Context) -> None:
        self.release(event.order_id)
        log.info("order %s: stock released (%s)", event.order_id, event.reason)
        released = c.StepFailed(
            event.order_id, event.reason, [*event.compensations, c.RELEASED_STOCK]
        )
        await ctx.publish(self.cfg.topic(c.STOCK_RELEASED), released, key=event.order_id)

    # -- orchestration: answer the saga ---------------------------------------------------

    async def on_reserve(self, req: c.ReserveStock) -> c.Reservation:
        refusal = self.reserve(req.order_id, req.lines)
        return c.Reservation(req.order_id, reserved=not refusal, reason=refusal)

    async def on_release(self, req: c.ReleaseStock) -> c.Released:
        released = self.release(req.order_id)
        log.info("order %s: stock released", req.order_id)
        return c.Released(req.order_id, released)


inventory = Inventory(Config.from_env())
service = inventory.service

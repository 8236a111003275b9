"""inventory: reserves stock for an order and releases it again when a later step fails.

Every operation is keyed by order id and idempotent, so a redelivered message or a
repeated request changes nothing. A release is remembered: a reservation that arrives
after its order's release (a late, retried request) is refused rather than leaked.

The stock and one hold per order (reserved, refused or released) live in the bus's
store (tables ``shop_stock`` and ``shop_holds``, see services/state.py), so any number
of inventory instances may run (``bus run --store URL services.inventory:service``).
Each operation is one transaction; an order's hold row is taken first (``INSERT ... ON
CONFLICT DO NOTHING`` waits for another transaction holding it), so two instances never
work on one order at once, and a sku's units only move by conditional updates, so
they never go below zero. The event handlers are ``idempotent=True``: the stock change,
the event they publish (outbox) and the inbox row commit together.
"""

from __future__ import annotations

import logging

import msgspec

import bus
from services import contracts as c
from services.config import Config
from services.state import RELEASED, RESERVED, Db, Tables, read_now

log = logging.getLogger("services.inventory")

_encode = msgspec.json.Encoder().encode
_decode_lines = msgspec.json.Decoder(list[c.Line]).decode


class Inventory:
    """The stock of one deployment and the ``bus.Service`` (``.service``) that keeps it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tables = Tables(cfg.stock)
        self.service = bus.Service(cfg.name("inventory"))
        t, retry = cfg.topic, cfg.retry()
        if cfg.style == "choreography":
            subscribe = self.service.subscribe
            subscribe(t(c.ORDER_PLACED), retry=retry, idempotent=True)(self.on_placed)
            subscribe(t(c.PAYMENT_FAILED), retry=retry, idempotent=True)(self.on_payment_failed)
        else:
            self.service.respond(t(c.STOCK_RESERVE), concurrency=64)(self.on_reserve)
            self.service.respond(t(c.STOCK_RELEASE), concurrency=64)(self.on_release)

    # -- what the store holds now (a SQLite file store: see state.read_now) ---------------

    @property
    def stock(self) -> dict[str, int]:
        """Units left per sku."""
        rows = read_now(self.cfg.store, "SELECT sku, units FROM shop_stock")
        return dict(rows) if rows else dict(self.cfg.stock)

    @property
    def reservations(self) -> dict[str, list[c.Line]]:
        """The lines each order holds now."""
        query = f"SELECT order_id, lines FROM shop_holds WHERE state = '{RESERVED}'"
        rows = read_now(self.cfg.store, query)
        return {order_id: _decode_lines(lines) for order_id, lines in rows}

    # -- the two operations, each in the caller's transaction -----------------------------

    async def reserve(self, db: Db, order_id: str, lines: list[c.Line]) -> str:
        """Reserve ``lines`` for ``order_id``; return "" on success, else why not."""
        taken = await db.execute(
            "INSERT INTO shop_holds (order_id, state, reason, lines) "
            "VALUES (?, 'reserving', '', ?) ON CONFLICT (order_id) DO NOTHING",
            order_id, _encode(lines).decode(),
        )  # fmt: skip
        if not taken:  # decided before: the same answer again
            state, reason = await db.fetchrow(
                "SELECT state, reason FROM shop_holds WHERE order_id = ?", order_id
            )
            return "" if state == RESERVED else c.ALREADY_RELEASED if state == RELEASED else reason
        wanted: dict[str, int] = {}
        for line in lines:
            wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        took, short = [], []
        for sku in sorted(wanted):  # one order of locks for every transaction
            if await db.execute(
                "UPDATE shop_stock SET units = units - ? WHERE sku = ? AND units >= ?",
                wanted[sku], sku, wanted[sku],
            ):  # fmt: skip
                took.append(sku)
            else:
                short.append(sku)
        if short:
            for sku in took:  # give back, in this same transaction
                await db.execute(
                    "UPDATE shop_stock SET units = units + ? WHERE sku = ?", wanted[sku], sku
                )
            reason = f"out of stock: {', '.join(short)}"
            await db.execute(
                "UPDATE shop_holds SET state = 'refused', reason = ? WHERE order_id = ?",
                reason, order_id,
            )  # fmt: skip
            return reason
        await db.execute(f"UPDATE shop_holds SET state = '{RESERVED}' WHERE order_id = ?", order_id)
        log.info("order %s: reserved", order_id)
        return ""

    async def release(self, db: Db, order_id: str) -> bool:
        """Give back what ``order_id`` holds; True if it held anything. Remembered: a
        reservation of this order from now on is refused."""
        if await db.execute(
            f"INSERT INTO shop_holds (order_id, state, reason, lines) VALUES (?, '{RELEASED}', "
            "'', '[]') ON CONFLICT (order_id) DO NOTHING",
            order_id,
        ):
            return False  # it never held anything
        state, lines = await db.fetchrow(
            "SELECT state, lines FROM shop_holds WHERE order_id = ? {lock}", order_id
        )
        if state == RELEASED:
            return False
        await db.execute(f"UPDATE shop_holds SET state = '{RELEASED}' WHERE order_id = ?", order_id)
        if state != RESERVED:
            return False
        held: dict[str, int] = {}
        for line in _decode_lines(lines):
            held[line.sku] = held.get(line.sku, 0) + line.quantity
        for sku in sorted(held):  # the order reserve locks them in: no deadlock between them
            await db.execute(
                "UPDATE shop_stock SET units = units + ? WHERE sku = ?", held[sku], sku
            )
        return True

    # -- choreography: react to events ----------------------------------------------------

    async def on_placed(self, event: c.OrderPlaced, ctx: bus.Context) -> None:
        t, tx = self.cfg.topic, ctx.transaction
        refusal = await self.reserve(await self.tables.use(tx), event.order_id, event.lines)
        if refusal:
            log.info("order %s: %s", event.order_id, refusal)
            failed = c.StepFailed(event.order_id, refusal)
            await tx.publish(t(c.STOCK_REJECTED), failed, key=event.order_id)
            return
        reserved = c.StockReserved(event.order_id, event.card, event.total_cents)
        await tx.publish(t(c.STOCK_RESERVED), reserved, key=event.order_id)

    async def on_payment_failed(self, event: c.StepFailed, ctx: bus.Context) -> None:
        tx = ctx.transaction
        await self.release(await self.tables.use(tx), event.order_id)
        log.info("order %s: stock released (%s)", event.order_id, event.reason)
        released = c.StepFailed(
            event.order_id, event.reason, [*event.compensations, c.RELEASED_STOCK]
        )
        await tx.publish(self.cfg.topic(c.STOCK_RELEASED), released, key=event.order_id)

    # -- orchestration: answer the saga ---------------------------------------------------

    async def on_reserve(self, req: c.ReserveStock, ctx: bus.Context) -> c.Reservation:
        async with ctx.open_transaction() as tx:
            refusal = await self.reserve(await self.tables.use(tx), req.order_id, req.lines)
        return c.Reservation(req.order_id, reserved=not refusal, reason=refusal)

    async def on_release(self, req: c.ReleaseStock, ctx: bus.Context) -> c.Released:
        async with ctx.open_transaction() as tx:
            released = await self.release(await self.tables.use(tx), req.order_id)
        log.info("order %s: stock released", req.order_id)
        return c.Released(req.order_id, released)


inventory = Inventory(Config.from_env())
service = inventory.service

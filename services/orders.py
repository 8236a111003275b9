"""orders: owns the orders and their states; answers ``order.create`` and ``order.get``
and settles an order when the checkout's outcome arrives (by events in choreography, by
the saga's report in orchestration).

The orders live in the bus's store (table ``shop_orders``, see services/state.py), so any
number of orders instances may run (``bus run --store URL services.orders:service``):
- ``order.create`` inserts the order and publishes ``order.placed`` in one transaction
  (the outbox): an order exists if, and only if, its checkout has started. A repeated
  request (same order id) returns the order that exists.
- the outcome handlers are ``idempotent=True``: the order's new state, the
  ``order.confirmed``/``order.failed`` event and the inbox row commit together, so a
  redelivered outcome changes nothing and the event leaves once in effect.
- ``order.get?wait`` long-polls: an instance wakes its own waiters when it settles an
  order, and looks again every little while for an order another instance settled.
"""

from __future__ import annotations

import logging
import time

import anyio
import msgspec

import bus
from services import contracts as c
from services.config import Config
from services.state import Db, Tables, read_now

log = logging.getLogger("services.orders")
MAX_WAIT = 30.0  # seconds an order.get may hold on for a final state
POLL = (0.05, 0.5)  # seconds between looks at a waited-for order: first, most

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(c.Order).decode


class Orders:
    """The orders of one deployment and the ``bus.Service`` (``.service``) that serves them."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tables = Tables(cfg.stock)
        self._waiters: dict[str, anyio.Event] = {}
        self.service = bus.Service(cfg.name("orders"))
        self._subscribe(self.service)

    def _subscribe(self, service: bus.Service) -> None:
        t, retry = self.cfg.topic, self.cfg.retry()
        service.respond(t(c.ORDER_CREATE), concurrency=64)(self.create)
        service.respond(t(c.ORDER_GET), concurrency=256)(self.get)  # long polls wait here
        if self.cfg.style == "choreography":
            outcomes = [(c.PAYMENT_COMPLETED, self.on_paid),
                        (c.STOCK_REJECTED, self.on_step_failed),
                        (c.STOCK_RELEASED, self.on_step_failed)]  # fmt: skip
        else:
            outcomes = [(c.CHECKOUT_SUCCEEDED, self.on_checkout),
                        (c.CHECKOUT_FAILED, self.on_checkout)]  # fmt: skip
        for topic, handler in outcomes:
            service.subscribe(t(topic), retry=retry, idempotent=True)(handler)

    @property
    def store(self) -> dict[str, c.Order]:
        """Every order now, read from a SQLite file store (see ``state.read_now``)."""
        rows = read_now(self.cfg.store, "SELECT body FROM shop_orders")
        return {order.order_id: order for order in (_decode(row[0]) for row in rows)}

    async def _read(self, db: Db, order_id: str, lock: bool = False) -> c.Order | None:
        query = "SELECT body FROM shop_orders WHERE order_id = ?" + (" {lock}" if lock else "")
        row = await db.fetchrow(query, order_id)
        return None if row is None else _decode(row[0])

    async def create(self, req: c.CreateOrder, ctx: bus.Context) -> c.Order:
        async with ctx.open_transaction() as tx:
            db = await self.tables.use(tx)
            found = await self._read(db, req.order_id)
            if found is not None:  # a repeated request: the order exists already
                return found
            order = c.Order(
                order_id=req.order_id,
                customer=req.customer,
                lines=req.lines,
                total_cents=c.total(req.lines),
                created_at=time.time(),
            )
            inserted = await db.execute(
                "INSERT INTO shop_orders (order_id, status, body) VALUES (?, ?, ?) "
                "ON CONFLICT (order_id) DO NOTHING",
                order.order_id, order.status, _encode(order).decode(),
            )  # fmt: skip
            if not inserted:  # another instance created it meanwhile
                return await self._read(db, req.order_id) or order
            placed = c.OrderPlaced(order.order_id, req.card, order.total_cents, order.lines)
            await tx.publish(
                self.cfg.topic(c.ORDER_PLACED),
                placed,
                key=order.order_id,
                correlation_id=ctx.correlation_id,
            )
        log.info("order %s placed: %d cents", order.order_id, order.total_cents)
        return order

    async def get(self, req: c.GetOrder, ctx: bus.Context) -> c.Order:
        order = await self._lookup(ctx, req.order_id)
        if order is None:
            raise c.OrderNotFound(f"no order {req.order_id!r}")
        if req.wait > 0 and order.status == c.PENDING:
            pause = POLL[0]
            with anyio.move_on_after(min(req.wait, MAX_WAIT)):
                while order.status == c.PENDING:
                    waiter = self._waiters.setdefault(req.order_id, anyio.Event())
                    with anyio.move_on_after(pause):  # another instance may settle it
                        await waiter.wait()
                    pause = min(pause * 2, POLL[1])
                    order = await self._lookup(ctx, req.order_id) or order
            waiter = self._waiters.get(req.order_id)
            if waiter is not None and not waiter.is_set():
                del self._waiters[req.order_id]  # settled elsewhere, or not yet: drop it
        return order

    async def _lookup(self, ctx: bus.Context, order_id: str) -> c.Order | None:
        async with ctx.open_transaction() as tx:
            return await self._read(await self.tables.use(tx), order_id)

    async def settle(
        self,
        ctx: bus.Context,
        order_id: str,
        *,
        confirmed: bool,
        reason: str = "",
        compensations: list[str] | None = None,
    ) -> None:
        """Move a pending order to its final state, once; repeats change nothing."""
        tx = ctx.transaction
        db = await self.tables.use(tx)
        order = await self._read(db, order_id, lock=True)
        if order is None:
            raise bus.Reject(f"an outcome for unknown order {order_id!r}")
        if order.status != c.PENDING:  # the other outcome of a duplicate chain came first
            return
        order.status = c.CONFIRMED if confirmed else c.FAILED
        order.reason = reason
        order.compensations = list(compensations or ())
        order.settled_at = time.time()
        await db.execute(
            "UPDATE shop_orders SET status = ?, body = ? WHERE order_id = ?",
            order.status, _encode(order).decode(), order_id,
        )  # fmt: skip
        topic = c.ORDER_CONFIRMED if confirmed else c.ORDER_FAILED
        event = c.OrderSettled(order_id, order.customer, order.status, reason)
        await tx.publish(self.cfg.topic(topic), event, key=order_id)
        waiter = self._waiters.pop(order_id, None)
        if waiter is not None:  # it looks again; on PostgreSQL maybe before our commit
            waiter.set()
        log.info("order %s %s%s", order_id, order.status, f": {reason}" if reason else "")

    # -- the outcome, as each style reports it ---------------------------------------------

    async def on_paid(self, event: c.PaymentCompleted, ctx: bus.Context) -> None:
        await self.settle(ctx, event.order_id, confirmed=True)

    async def on_step_failed(self, event: c.StepFailed, ctx: bus.Context) -> None:
        await self.settle(
            ctx,
            event.order_id,
            confirmed=False,
            reason=event.reason,
            compensations=event.compensations,
        )

    async def on_checkout(self, event: c.CheckoutOutcome, ctx: bus.Context) -> None:
        await self.settle(
            ctx,
            event.order_id,
            confirmed=event.succeeded,
            reason=event.reason,
            compensations=event.compensations,
        )


orders = Orders(Config.from_env())
service = orders.service

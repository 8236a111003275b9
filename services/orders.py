"""orders: owns the orders and their states; answers ``order.create`` and ``order.get``
and settles an order when the checkout's outcome arrives (by events in choreography, by
the saga's report in orchestration).

The store lives in this process's memory, so a deployment runs ONE orders instance: a
second one would hold other orders and answer ``order.get`` wrongly. (A real shop would
keep it in a database; the bus side would not change.)
"""

from __future__ import annotations

import logging
import time

import anyio

import bus
from services import contracts as c
from services.config import Config

log = logging.getLogger("services.orders")
MAX_WAIT = 30.0  # seconds an order.get may hold on for a final state


class Orders:
    """The orders of one deployment and the ``bus.Service`` (``.service``) that serves them."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store: dict[str, c.Order] = {}
        self._settled: dict[str, anyio.Event] = {}
        self.service = bus.Service(cfg.name("orders"))
        self._subscribe(self.service)

    def _subscribe(self, service: bus.Service) -> None:
        t, retry = self.cfg.topic, self.cfg.retry()
        service.respond(t(c.ORDER_CREATE), concurrency=64)(self.create)
        service.respond(t(c.ORDER_GET), concurrency=256)(self.get)  # long polls wait here
        if self.cfg.style == "choreography":
            service.subscribe(t(c.PAYMENT_COMPLETED), retry=retry)(self.on_paid)
            service.subscribe(t(c.STOCK_REJECTED), retry=retry)(self.on_step_failed)
            service.subscribe(t(c.STOCK_RELEASED), retry=retry)(self.on_step_failed)
        else:
            service.subscribe(t(c.CHECKOUT_SUCCEEDED), retry=retry)(self.on_checkout)
            service.subscribe(t(c.CHECKOUT_FAILED), retry=retry)(self.on_checkout)

    async def create(self, req: c.CreateOrder, ctx: bus.Context) -> c.Order:
        order = self.store.get(req.order_id)
        if order is not None:  # a repeated request: the order exists already
            return order
        order = c.Order(
            order_id=req.order_id,
            customer=req.customer,
            lines=req.lines,
            total_cents=c.total(req.lines),
            created_at=time.time(),
        )
        self.store[order.order_id] = order
        self._settled[order.order_id] = anyio.Event()
        placed = c.OrderPlaced(order.order_id, req.card, order.total_cents, order.lines)
        try:
            await ctx.publish(self.cfg.topic(c.ORDER_PLACED), placed, key=order.order_id)
        except BaseException:  # not placed: the caller learns so, and no order is left behind
            del self.store[order.order_id], self._settled[order.order_id]
            raise
        log.info("order %s placed: %d cents", order.order_id, order.total_cents)
        return order

    async def get(self, req: c.GetOrder) -> c.Order:
        order = self.store.get(req.order_id)
        if order is None:
            raise c.OrderNotFound(f"no order {req.order_id!r}")
        if req.wait > 0 and order.status == c.PENDING:
            with anyio.move_on_after(min(req.wait, MAX_WAIT)):
                await self._settled[req.order_id].wait()
        return order

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
        order = self.store.get(order_id)
        if order is None:
            raise bus.Reject(f"an outcome for unknown order {order_id!r}")
        if order.status != c.PENDING:
            return
        status = c.CONFIRMED if confirmed else c.FAILED
        topic = c.ORDER_CONFIRMED if confirmed else c.ORDER_FAILED
        event = c.OrderSettled(order_id, order.customer, status, reason)
        await ctx.publish(self.cfg.topic(topic), event, key=order_id)
        if order.status != c.PENDING:  # a duplicate settled it while we published
            return
        order.status, order.reason = status, reason
        order.compensations = list(compensations or ())
        order.settled_at = time.time()
        self._settled[order_id].set()
        log.info("order %s %s%s", order_id, status, f": {reason}" if reason else "")

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

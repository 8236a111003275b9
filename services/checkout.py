"""checkout: the orchestrated saga (``SHOP_STYLE=orchestration``). For each placed order
it asks inventory to reserve, then payments to charge, and reports the outcome to
orders; when a step fails it undoes the steps before it (release the stock; refund a
charge whose outcome it could not learn).

A step that times out or fails transiently raises, so the bus runs the saga again after
a backoff; every step is idempotent per order id, so a rerun picks up where the last run
stopped. On the last attempt it gives up cleanly: compensates and reports the failure.
A refund is a durable command (published, not requested), so it waits on the broker
while payments is down. Only a release that fails on the last attempt dead-letters the
saga; ``bus dlq replay <prefix>.order.placed --group <prefix>-checkout`` runs it again once
inventory is back. Stateless: any number of instances may run. In choreography it
subscribes to nothing.
"""

from __future__ import annotations

import logging
import time

import bus
from services import contracts as c
from services.config import Config

log = logging.getLogger("services.checkout")
TRANSIENT = c.error_name(c.TransientPaymentError)


class StepFailed(Exception):
    """A step's answer ended the saga; the order fails for ``reason``."""

    def __init__(self, reason: str, compensations: list[str]) -> None:
        super().__init__(reason)
        self.reason, self.compensations = reason, compensations


class Checkout:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.service = bus.Service(cfg.name("checkout"))
        if cfg.style == "orchestration":
            self.service.subscribe(cfg.topic(c.ORDER_PLACED), retry=cfg.retry())(self.run)

    async def _ask(self, ctx: bus.Context, topic: str, payload: object, response: type) -> object:
        order_id: str = payload.order_id  # type: ignore[attr-defined]
        return await ctx.request(
            self.cfg.topic(topic),
            payload,
            response=response,
            timeout=self.cfg.request_timeout,
            key=order_id,
        )

    async def run(self, order: c.OrderPlaced, ctx: bus.Context) -> None:
        last = ctx.attempt >= self.cfg.attempts
        try:
            await self._reserve(order, ctx, last)
            await self._charge(order, ctx, last)
        except StepFailed as failed:
            log.info("order %s: checkout failed: %s", order.order_id, failed.reason)
            outcome = c.CheckoutOutcome(order.order_id, False, failed.reason, failed.compensations)
            await ctx.publish(self.cfg.topic(c.CHECKOUT_FAILED), outcome, key=order.order_id)
            return
        outcome = c.CheckoutOutcome(order.order_id, succeeded=True)
        await ctx.publish(self.cfg.topic(c.CHECKOUT_SUCCEEDED), outcome, key=order.order_id)

    async def _reserve(self, order: c.OrderPlaced, ctx: bus.Context, last: bool) -> None:
        try:
            reply = await self._ask(
                ctx, c.STOCK_RESERVE, c.ReserveStock(order.order_id, order.lines), c.Reservation
            )
        except (bus.RequestTimeout, bus.RemoteError):
            if not last:
                raise  # the bus runs the saga again
            await self._release(order, ctx)  # the reservation may have landed
            raise StepFailed("inventory unavailable", [c.RELEASED_STOCK]) from None
        assert isinstance(reply, c.Reservation)
        if reply.reason == c.ALREADY_RELEASED:  # a run before this one failed the order
            raise StepFailed("checkout interrupted", [c.RELEASED_STOCK])
        if not reply.reserved:
            raise StepFailed(reply.reason, [])

    async def _charge(self, order: c.OrderPlaced, ctx: bus.Context, last: bool) -> None:
        expires_at = time.time() + self.cfg.request_timeout
        charge = c.Charge(order.order_id, order.card, order.total_cents, expires_at, last)
        try:
            reply = await self._ask(ctx, c.PAYMENT_CHARGE, charge, c.ChargeResult)
        except (bus.RequestTimeout, bus.RemoteError) as exc:
            unknown = isinstance(exc, bus.RequestTimeout)
            if (unknown or exc.error_type == TRANSIENT) and not last:  # type: ignore[union-attr]
                raise  # the bus runs the saga again; reserve and charge are idempotent
            undone = [c.RELEASED_STOCK]
            if unknown:  # it may have charged before the reply got lost: refund it
                refund = c.Refund(order.order_id, order.total_cents)
                await ctx.publish(self.cfg.topic(c.PAYMENT_REFUND), refund, key=order.order_id)
                undone.insert(0, c.REFUNDED_PAYMENT)
            await self._release(order, ctx)
            raise StepFailed("payment provider unavailable", undone) from None
        assert isinstance(reply, c.ChargeResult)
        if not reply.approved:
            await self._release(order, ctx)
            raise StepFailed(reply.reason, [c.RELEASED_STOCK])

    async def _release(self, order: c.OrderPlaced, ctx: bus.Context) -> None:
        await self._ask(ctx, c.STOCK_RELEASE, c.ReleaseStock(order.order_id), c.Released)


checkout = Checkout(Config.from_env())
service = checkout.service

"""payments: charges cards and refunds them, in front of a pretend payment provider.

Fault injection, from configuration: a share (``SHOP_PAYMENT_FLAKY``) of charge attempts
fail with ``TransientPaymentError``, which the bus retries; cards in
``SHOP_DECLINED_CARDS`` are declined, a business outcome that is never retried. A charge
still failing transiently on its last attempt counts as declined ("payment provider
unavailable"), so the order fails cleanly instead of waiting in a dead-letter queue.

The provider is idempotent per order id, as real ones are with an idempotency key: the
first final answer for an order (approved, declined, or given up on a last try) is the
answer to every later charge of it, and a refund stands too. So a message delivered
twice (a broker failing over redelivers what was handled but not yet acked) and the two
chains of retries it starts reach the same outcome, and the stock and the order agree.

The pretend provider keeps those records where a real one would keep them, outside any
one payments instance: in the bus's store (table ``shop_charges``, see
services/state.py), written in the same transaction as the event that announces the
answer. So any number of payments instances give one answer per order, a duplicate's
included (``bus run --store URL services.payments:service``). The first instance to
record an answer wins; another that decided at the same moment reads and returns it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter

import bus
from services import contracts as c
from services.config import Config
from services.state import Db, Tables

log = logging.getLogger("services.payments")
UNAVAILABLE = "payment provider unavailable"


class Payments:
    """The pretend provider and the ``bus.Service`` (``.service``) in front of it."""

    def __init__(self, cfg: Config, *, seed: int | None = None) -> None:
        self.cfg = cfg
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()  # this process's charges, by outcome
        self.tables = Tables(cfg.stock)
        self.service = bus.Service(cfg.name("payments"))
        t, retry = cfg.topic, cfg.retry()
        if cfg.style == "choreography":
            self.service.subscribe(t(c.STOCK_RESERVED), retry=retry, idempotent=True)(
                self.on_reserved
            )
        else:
            self.service.respond(t(c.PAYMENT_CHARGE), concurrency=64)(self.on_charge)
            self.service.subscribe(t(c.PAYMENT_REFUND), retry=retry, idempotent=True)(
                self.on_refund
            )

    async def _settled(self, db: Db, order_id: str) -> c.ChargeResult | None:
        row = await db.fetchrow(
            "SELECT approved, reason FROM shop_charges WHERE order_id = ?", order_id
        )
        return None if row is None else c.ChargeResult(order_id, bool(row[0]), row[1])

    async def charge(
        self, db: Db, order_id: str, card: str, total_cents: int, *, last: bool
    ) -> c.ChargeResult:
        """Ask the provider. Raises TransientPaymentError for an injected fault, except on
        the caller's ``last`` try, where the fault is the answer."""
        settled = await self._settled(db, order_id)
        if settled is not None:  # the idempotency key: the same answer again
            self.counts["repeated"] += 1
            return settled
        if self.random.random() < self.cfg.payment_flaky:
            self.counts["transient"] += 1
            if not last:
                raise c.TransientPaymentError(f"provider timed out charging order {order_id}")
            self.counts["gave up"] += 1
            result = c.ChargeResult(order_id, approved=False, reason=UNAVAILABLE)
        elif card in self.cfg.declined_cards:
            result = c.ChargeResult(order_id, approved=False, reason="card declined")
        else:
            result = c.ChargeResult(order_id, approved=True)
        if not await db.execute(
            "INSERT INTO shop_charges (order_id, approved, reason) VALUES (?, ?, ?) "
            "ON CONFLICT (order_id) DO NOTHING",
            order_id, int(result.approved), result.reason,
        ):  # fmt: skip
            # Another instance answered first (its transaction held the key till it committed).
            self.counts["repeated"] += 1
            return await self._settled(db, order_id) or result
        if result.approved:
            self.counts["approved"] += 1
            log.info("order %s: charged %d cents", order_id, total_cents)
        elif result.reason != UNAVAILABLE:
            self.counts["declined"] += 1
        return result

    async def on_reserved(self, event: c.StockReserved, ctx: bus.Context) -> None:
        last = ctx.attempt >= self.cfg.attempts
        tx = ctx.transaction
        db = await self.tables.use(tx)
        result = await self.charge(db, event.order_id, event.card, event.total_cents, last=last)
        t = self.cfg.topic
        if result.approved:
            paid = c.PaymentCompleted(event.order_id, event.total_cents)
            await tx.publish(t(c.PAYMENT_COMPLETED), paid, key=event.order_id)
        else:
            failed = c.StepFailed(event.order_id, result.reason)
            await tx.publish(t(c.PAYMENT_FAILED), failed, key=event.order_id)

    async def on_charge(self, req: c.Charge, ctx: bus.Context) -> c.ChargeResult:
        if req.expires_at and time.time() > req.expires_at:
            # The saga gave up on this charge (payments was down, the request waited in
            # the queue): charging now would take money for an order that has failed.
            self.counts["expired"] += 1
            raise c.RequestExpired(f"charge for order {req.order_id} came after its deadline")
        async with ctx.open_transaction() as tx:
            db = await self.tables.use(tx)
            return await self.charge(db, req.order_id, req.card, req.total_cents, last=req.last)

    async def on_refund(self, req: c.Refund, ctx: bus.Context) -> None:
        """A durable command, not a request: a refund waits on the broker for payments to
        come back rather than fail with it."""
        db = await self.tables.use(ctx.transaction)
        # No charge of this order goes through after its refund, a duplicate's included.
        await db.execute(
            "INSERT INTO shop_charges (order_id, approved, reason) VALUES (?, 0, 'refunded') "
            "ON CONFLICT (order_id) DO UPDATE SET approved = 0, reason = 'refunded'",
            req.order_id,
        )
        self.counts["refunded"] += 1
        log.info("order %s: refunded %d cents (if it was charged)", req.order_id, req.total_cents)


payments = Payments(Config.from_env())
service = payments.service

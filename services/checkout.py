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
inventory is back.

One outcome per order: a failover redelivers ``order.placed`` while its first run goes
on, so two runs of one saga may reach different ends (one confirmed, the other out of
attempts on a lost reply). Before it compensates or reports, a run records its outcome
in the store (``shop_checkouts``); the first record stands, and every run, its own
reruns included, acts on that one: reports it, and undoes what it lists. Stateless
otherwise: any number of instances may run, sharing the store. In choreography it
subscribes to nothing.
"""

from __future__ import annotations

import logging
import time

import msgspec

import bus
from services import contracts as c
from services.config import Config
from services.state import Tables

log = logging.getLogger("services.checkout")
TRANSIENT = c.error_name(c.TransientPaymentError)
# A release is asked this often within one run before the run fails: a reply lost when a
# broker node dies would otherwise spend a whole attempt (and the last dead-letters).
RELEASE_TRIES = 3


class StepFailed(Exception):
    """A step's answer ended the saga; the order fails for ``reason``, and
    ``compensations`` (of c.RELEASED_STOCK, c.REFUNDED_PAYMENT) say what to undo."""

    def __init__(self, reason: str, compensations: list[str]) -> None:
        super().__init__(reason)
        self.reason, self.compensations = reason, compensations


class Checkout:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.tables = Tables(cfg.stock)
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
            mine = c.CheckoutOutcome(order.order_id, succeeded=True)
        except StepFailed as failed:
            mine = c.CheckoutOutcome(order.order_id, False, failed.reason, failed.compensations)
        outcome = await self._decide(ctx, mine)
        if outcome != mine:
            log.info("order %s: another run of its checkout decided first", order.order_id)
        if outcome.succeeded:
            topic = c.CHECKOUT_SUCCEEDED
        else:
            log.info("order %s: checkout failed: %s", order.order_id, outcome.reason)
            await self._undo(order, ctx, outcome.compensations)
            topic = c.CHECKOUT_FAILED
        await ctx.publish(self.cfg.topic(topic), outcome, key=order.order_id)

    async def _decide(self, ctx: bus.Context, mine: c.CheckoutOutcome) -> c.CheckoutOutcome:
        """Record ``mine`` as the order's outcome unless one is recorded; the one that
        stands."""
        async with ctx.open_transaction() as tx:
            db = await self.tables.use(tx)
            await db.execute(
                "INSERT INTO shop_checkouts (order_id, succeeded, reason, compensations) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
                mine.order_id,
                int(mine.succeeded),
                mine.reason,
                msgspec.json.encode(mine.compensations).decode(),
            )
            row = await db.fetchrow(
                "SELECT succeeded, reason, compensations FROM shop_checkouts WHERE order_id = ?",
                mine.order_id,
            )
        undo = msgspec.json.decode(row[2], type=list[str])
        return c.CheckoutOutcome(mine.order_id, bool(row[0]), row[1], undo)

    async def _undo(self, order: c.OrderPlaced, ctx: bus.Context, undo: list[str]) -> None:
        """The compensations of a failed outcome; each is idempotent per order, so a
        rerun (or the other run of a duplicate) may do them again."""
        if c.REFUNDED_PAYMENT in undo:  # it may have charged before the reply got lost
            refund = c.Refund(order.order_id, order.total_cents)
            await ctx.publish(self.cfg.topic(c.PAYMENT_REFUND), refund, key=order.order_id)
        if c.RELEASED_STOCK in undo:
            release = c.ReleaseStock(order.order_id)
            for tries_left in reversed(range(RELEASE_TRIES)):
                try:
                    await self._ask(ctx, c.STOCK_RELEASE, release, c.Released)
                    break
                except bus.RequestTimeout:  # a reply lost in a failover: ask again
                    if not tries_left:
                        raise

    async def _reserve(self, order: c.OrderPlaced, ctx: bus.Context, last: bool) -> None:
        try:
            reply = await self._ask(
                ctx, c.STOCK_RESERVE, c.ReserveStock(order.order_id, order.lines), c.Reservation
            )
        except (bus.RequestTimeout, bus.RemoteError):
            if not last:
                raise  # the bus runs the saga again
            # The reservation may have landed: release it.
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
            timed_out = isinstance(exc, bus.RequestTimeout)
            if (timed_out or exc.error_type == TRANSIENT) and not last:  # type: ignore[union-attr]
                raise  # the bus runs the saga again; reserve and charge are idempotent
            # No answer is not "not charged": this run's charge may have landed before its
            # reply was lost, and a copy of an earlier charge (redelivered after a crash)
            # may still land before it expires. A refund stands against both, so refund.
            undo = [c.REFUNDED_PAYMENT, c.RELEASED_STOCK]
            raise StepFailed("payment provider unavailable", undo) from None
        assert isinstance(reply, c.ChargeResult)
        if not reply.approved:
            raise StepFailed(reply.reason, [c.RELEASED_STOCK])


checkout = Checkout(Config.from_env())
service = checkout.service

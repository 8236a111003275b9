"""The inbox: an ``idempotent=True`` handler runs at most once in effect per message.

The handler runs inside one store transaction that first records (group, message id).
If the pair is already recorded (a redelivery, or a second copy the outbox relay sent),
the transaction ends without running the handler and the message is acked. If the
handler raises, its writes and the inbox row roll back together, and the usual retry and
dead-letter rules apply; if it returns, both commit, then the message is acked. The
rows are removed by the relay's housekeeping after the store's ``inbox_retention``.

Built once per subscription when the bus starts, by wrapping its handler: a
subscription without ``idempotent=True`` is not touched and pays nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import TYPE_CHECKING, Any

from bus.context import Context
from bus.service import Subscription
from bus.store.base import Store
from bus.transaction import Transaction

if TYPE_CHECKING:
    from bus.bus import Bus

log = logging.getLogger("bus.inbox")


def idempotent(sub: Subscription, bus: Bus, store: Store) -> Subscription:
    """``sub`` with its handler run through the inbox (see the module)."""
    handler, wants_context = sub.handler, sub.wants_context

    @functools.wraps(handler)
    async def once(payload: Any, ctx: Context) -> Any:
        tx = Transaction(bus, store, carried=(ctx.correlation_id, ctx.message_id))
        async with tx:
            if not await tx._record(ctx.group, ctx.message_id):
                log.info(
                    "message %s of %s was handled by group %s before: acked, not run again",
                    ctx.message_id, ctx.topic, ctx.group,
                    extra={"message_id": ctx.message_id, "topic": ctx.topic},
                )  # fmt: skip
                return None
            ctx._transaction = tx
            if wants_context:
                return await handler(payload, ctx)
            return await handler(payload)

    return dataclasses.replace(sub, handler=once, wants_context=True)

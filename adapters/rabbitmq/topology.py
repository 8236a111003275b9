"""Names and idempotent declarations of everything the adapter puts on the broker.

For exchange ``X``, group ``g`` and topic ``t``:

- ``X``: a durable topic exchange; topics are routing keys on it.
- ``X:g:t``: the group's durable queue, bound to ``X`` with routing key ``t``.
- ``X:g:t:dlq``: the group's dead letters for ``t``.
- ``X:g:t:ephemeral:<id>`` (and ``...:dlq``): an ephemeral group's queue, exclusive to
  the connection that made it and deleted with it.
- ``X:g:t:delay:<ms>``: a retry waiting room. Its messages expire after ``ms`` and are
  dead-lettered by RabbitMQ through the default exchange straight back to ``X:g:t``, so a
  retry reaches that group alone, survives a restart of the consumer and arrives no
  sooner than asked. Delays are rounded UP to a grid (at most 10% later), so a jittered
  schedule reuses a handful of queues; each one expires once unused (a minute after its
  TTL; with ``queue_type=quorum`` it is named ``X:g:t:delay:<ms>:kept`` and kept a day,
  for the reason given at _QUORUM_EXPIRES_MARGIN_MS).
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiormq.abc import AbstractChannel

from adapters.rabbitmq.config import RabbitConfig

_STEP = 1.1
_LOG_STEP = math.log(_STEP)
# A delay queue outlives its TTL by this much after its last declaration; the sender
# declares it again once the last declaration is older than _REDECLARE, so a queue
# never expires while holding a message.
_EXPIRES_MARGIN_MS = 60_000
# A quorum delay queue is kept a day after its last use instead: RabbitMQ 3.10.8's
# at-least-once dead-lettering can strand messages that expire while the queue changes
# leader (rabbitmq-server#7677, fixed in later releases); they wait in the queue for an
# operator (README, "Running on a cluster"), who must find them there, not deleted.
_QUORUM_EXPIRES_MARGIN_MS = 24 * 3600 * 1000
_REDECLARE = 10.0


def group_queue(config: RabbitConfig, topic: str, group: str) -> str:
    return f"{config.exchange}:{group}:{topic}"


def dead_letter_queue(config: RabbitConfig, topic: str, group: str) -> str:
    return f"{group_queue(config, topic, group)}:dlq"


def delay_bucket_ms(delay: float) -> int:
    """``delay`` in whole milliseconds, rounded up to the next power of 1.1 above 20 ms:
    never less than ``delay``, at most 10% more, ~24 distinct values per decade."""
    ms = max(1, math.ceil(delay * 1000))
    if ms <= 20:
        return ms
    k = math.ceil(math.log(ms) / _LOG_STEP)
    bucket = math.ceil(_STEP**k)
    while bucket < ms:  # floating point may land a hair below
        k += 1
        bucket = math.ceil(_STEP**k)
    return bucket


class Topology:
    """Declares queues idempotently, remembering what this connection declared."""

    def __init__(self, config: RabbitConfig) -> None:
        self.config = config
        self._args: dict[str, Any] = {"x-queue-type": config.queue_type}
        self._group_args = dict(self._args)
        if config.max_length is not None:
            self._group_args["x-max-length"] = config.max_length
            self._group_args["x-overflow"] = "reject-publish"
        self._delays: dict[str, float] = {}

    def forget(self) -> None:
        """After a reconnect: declare delay queues again before their next use."""
        self._delays.clear()

    async def declare_exchange(self, channel: AbstractChannel) -> None:
        await channel.exchange_declare(self.config.exchange, exchange_type="topic", durable=True)

    async def declare_group(self, channel: AbstractChannel, topic: str, group: str) -> str:
        """The group's queue and dead-letter queue, bound; returns the queue's name."""
        name = group_queue(self.config, topic, group)
        await channel.queue_declare(name, durable=True, arguments=self._group_args)
        await channel.queue_declare(
            dead_letter_queue(self.config, topic, group), durable=True, arguments=self._args
        )
        await channel.queue_bind(name, self.config.exchange, routing_key=topic)
        return name

    async def declare_dead_letters(self, channel: AbstractChannel, dlq: str) -> None:
        """A group's dead-letter queue alone (again, after an operator deleted it)."""
        await channel.queue_declare(dlq, durable=True, arguments=self._args)

    async def declare_ephemeral(self, channel: AbstractChannel, topic: str, name: str) -> None:
        """A queue for a group of one that lives as long as its connection: exclusive,
        auto-deleted, bound to ``topic``, with an exclusive dead-letter queue beside it."""
        await channel.queue_declare(name, exclusive=True, auto_delete=True)
        await channel.queue_declare(f"{name}:dlq", exclusive=True)
        await channel.queue_bind(name, self.config.exchange, routing_key=topic)

    async def delay_queue(
        self, channel: AbstractChannel, target: str, delay: float, *, again: bool = False
    ) -> str:
        """A queue that hands messages back to queue ``target`` after ``delay`` seconds
        or a little more; declared when it was not declared in the last few seconds, or
        ``again`` (it was found missing)."""
        ms = delay_bucket_ms(delay)
        name = f"{target}:delay:{ms}"
        if self.config.queue_type == "quorum":
            name += ":kept"  # other arguments than before 2026-11: another name
        now = time.monotonic()
        if again or now - self._delays.get(name, -math.inf) > _REDECLARE:
            arguments: dict[str, Any] = {
                **self._args,
                "x-message-ttl": ms,
                "x-expires": ms + _EXPIRES_MARGIN_MS,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target,
            }
            if self.config.queue_type == "quorum":
                # RabbitMQ's default for a quorum queue drops an expired message whose
                # dead-lettering fails (a node lost at that moment): a retry would be lost.
                arguments["x-dead-letter-strategy"] = "at-least-once"
                arguments["x-overflow"] = "reject-publish"
                arguments["x-expires"] = ms + _QUORUM_EXPIRES_MARGIN_MS
            await channel.queue_declare(name, durable=True, arguments=arguments)
            self._delays[name] = now
        return name

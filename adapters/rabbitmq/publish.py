"""Confirmed publishing that survives a reconnect.

Many publishes share one confirm channel and are in flight at once (aiormq pipelines
them: each waits only for its own confirm). A publish whose channel or connection is
lost before its confirm arrived is sent again once the channel is back: a duplicate is
allowed by at-least-once delivery, a loss is not.

A nack replaces the channel and the message is sent again on the new one, with backoff,
until PUBLISH_TIMEOUT: RabbitMQ nacks publishes to a quorum queue while it has no leader
(a cluster node just lost, an election under way; seconds), and 3.10 goes on nacking
every publish on a channel whose first publish came in that window, for as long as that
channel lives. A nack is the broker saying "not now", so it is waited out like a lost
connection; the publish raises PublishError only if it lasts the whole timeout.

Except where the queues have a ``max_length``: there a nack most likely means "full",
which the caller is told at once (after one more channel, in case it was an election).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiormq.exceptions as amqp
import tenacity
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from adapters.rabbitmq.errors import is_transient, publish_error

PUBLISH_TIMEOUT = 30.0
"""How long one publish may wait for a lost connection to come back."""


class ChannelSource(Protocol):
    """Where a publish gets its channel (a ChannelKeeper)."""

    def now(self) -> AbstractChannel | None:
        """The channel if it is open now, without waiting."""

    async def current(self) -> AbstractChannel:
        """The channel, waiting while it is re-opened."""
        ...

    def renew(self, channel: AbstractChannel) -> None:
        """Replace ``channel`` (it nacked a publish) with a new one."""


async def publish(
    source: ChannelSource,
    body: bytes,
    properties: Basic.Properties,
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    nack_means_full: bool = False,
) -> None:
    """Publish and wait for the broker's confirm (when the channel has confirms on).

    Raises PublishError when the broker refused or returned the message, or when the
    connection stayed down for PUBLISH_TIMEOUT. The first try takes no timer: a confirm
    can only fail to come if the connection dies, which aiormq reports (heartbeats catch
    a silent peer), and then the slow path below takes over.
    """
    nacks_left = 2 if nack_means_full else None
    raw = source.now()
    if raw is not None:
        try:
            await raw.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
            )
            return
        except Exception as exc:
            if nacked(exc):
                source.renew(raw)
                if nacks_left is not None:
                    nacks_left -= 1
            elif not is_transient(exc):
                raise publish_error(exc, _where(exchange, routing_key)) from None
    await _publish_patiently(
        source,
        body,
        properties,
        exchange=exchange,
        routing_key=routing_key,
        mandatory=mandatory,
        nacks_left=nacks_left,
    )


async def _publish_patiently(
    source: ChannelSource,
    body: bytes,
    properties: Basic.Properties,
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    nacks_left: int | None,
) -> None:
    """Try until the channel is back and the broker confirms, up to PUBLISH_TIMEOUT (and
    at most ``nacks_left`` more nacks, when that is not None)."""

    def again(exc: BaseException) -> bool:
        return is_transient(exc) or (nacked(exc) and (nacks_left is None or nacks_left > 0))

    retrying = tenacity.AsyncRetrying(
        # The channel is being re-opened: try again soon, then less often.
        wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
        retry=tenacity.retry_if_exception(again),
        reraise=True,
    )
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            async for attempt in retrying:
                with attempt:
                    raw = await source.current()
                    try:
                        await raw.basic_publish(
                            body,
                            exchange=exchange,
                            routing_key=routing_key,
                            properties=properties,
                            mandatory=mandatory,
                        )
                    except Exception as exc:
                        if nacked(exc):
                            source.renew(raw)
                            if nacks_left is not None:
                                nacks_left -= 1
                        raise
    except Exception as exc:  # TimeoutError included: the connection stayed down
        raise publish_error(exc, _where(exchange, routing_key)) from None


def nacked(exc: BaseException) -> bool:
    """The broker nacked the publish (not a return of a mandatory one)."""
    return isinstance(exc, amqp.DeliveryError) and not isinstance(exc, amqp.PublishError)


def _where(exchange: str, routing_key: str) -> str:
    return f"exchange {exchange!r} with routing key {routing_key!r}"

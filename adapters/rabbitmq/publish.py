"""Confirmed publishing that survives a reconnect.

Many publishes share one confirm channel and are in flight at once (aiormq pipelines
them: each waits only for its own confirm). A publish whose channel or connection is
lost before its confirm arrived is sent again once the channel is back: a duplicate is
allowed by at-least-once delivery, a loss is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from adapters.rabbitmq.errors import is_transient, publish_error

PUBLISH_TIMEOUT = 30.0
"""How long one publish may wait for a lost connection to come back."""


async def publish(
    channel: Callable[[], Awaitable[AbstractChannel]],
    body: bytes,
    properties: Basic.Properties,
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
) -> None:
    """Publish and wait for the broker's confirm (when the channel has confirms on).

    Raises PublishError when the broker refused or returned the message, or when the
    connection stayed down for PUBLISH_TIMEOUT.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUBLISH_TIMEOUT
    where = f"exchange {exchange!r} with routing key {routing_key!r}"
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                raw = await channel()
                await raw.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                )
            return
        except TimeoutError as exc:
            raise publish_error(exc, where) from None
        except Exception as exc:
            if not is_transient(exc) or loop.time() >= deadline:
                raise publish_error(exc, where) from None
        await asyncio.sleep(0.05)  # the channel is being re-opened: try again shortly

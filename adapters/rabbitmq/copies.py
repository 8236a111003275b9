"""Copies of delivered messages, confirmed: retries, dead letters, and the return of what
was fetched but never handed out.

A copy goes through the default exchange straight to one queue, mandatory, so a queue that
is missing (deleted by an operator) shows as a return instead of a silent drop. The queue
is then declared again and the copy sent once more: dead-lettering and retries heal
themselves. A copy is written from the properties its original was delivered with (see
convert.properties), and it either is confirmed within COPY_TIMEOUT or raises.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from adapters.rabbitmq.convert import properties
from adapters.rabbitmq.errors import Unroutable, publish_error
from adapters.rabbitmq.link import ChannelKeeper
from adapters.rabbitmq.publish import PUBLISH_TIMEOUT, publish
from adapters.rabbitmq.topology import Topology
from bus.errors import BusError
from bus.message import Message

log = logging.getLogger("bus.rabbitmq")

COPY_TIMEOUT = PUBLISH_TIMEOUT
"""How long a copy may take, declarations and a reconnect included, before it raises."""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where one consumer's copies go."""

    topic: str
    group: str
    queue: str
    """The group's queue: retries come back here, returns go here."""
    dlq: str
    ephemeral: bool


class Copier:
    """Sends copies on the transport's confirmed publishing channel."""

    def __init__(
        self, publisher: ChannelKeeper, topology: Topology, user: str, *, bounded: bool
    ) -> None:
        self._publisher = publisher
        self._topology = topology
        self._user = user
        self._bounded = bounded  # the queues have a max_length: a nack means full

    async def send(self, route: Route, message: Message, delay: float | None) -> None:
        """Publish ``message``, confirmed: to the dead-letter queue (``delay`` None),
        straight back to the group's queue (0), or through a delay queue that returns it
        there after ``delay`` seconds. Raises PublishError (or ConnectionLost) when the
        broker did not take it."""
        try:
            async with asyncio.timeout(COPY_TIMEOUT):
                try:
                    await self._send(route, message, delay)
                except Unroutable as exc:
                    log.warning("%s; declaring it again", exc)
                    await self._send(route, message, delay, again=await self._heal(route, delay))
        except TimeoutError:
            raise publish_error(TimeoutError(), f"{route.queue!r} (a copy)") from None
        except BusError:
            raise
        except Exception as exc:  # a declaration the broker refused
            raise publish_error(exc, f"{route.queue!r} (a copy)") from None

    async def _send(
        self, route: Route, message: Message, delay: float | None, *, again: bool = False
    ) -> None:
        props = properties(message, user=self._user)
        if delay is None:
            target = route.dlq
        elif delay <= 0:
            target = route.queue
        else:
            channel = await self._publisher.current()
            target = await self._topology.delay_queue(channel, route.queue, delay, again=again)
            # A per-message TTL shorter than the delay would bring it back too soon; RabbitMQ
            # drops it anyway when the delay queue hands the message on.
            props.expiration = None
        await publish(
            self._publisher,
            message.body,
            props,
            exchange="",
            routing_key=target,
            mandatory=True,
            nack_means_full=self._bounded,
        )

    async def _heal(self, route: Route, delay: float | None) -> bool:
        """Declare the missing destination; True when it is a delay queue (declared by
        the next ``_send`` itself)."""
        if delay is not None and delay > 0:
            return True
        channel = await self._publisher.current()
        if route.ephemeral:
            if delay is None:  # its queue lives on; only the dead-letter queue went
                await channel.queue_declare(route.dlq, exclusive=True)
            # else: an ephemeral queue gone is a consumer gone; the copy fails again
        elif delay is None:
            await self._topology.declare_dead_letters(channel, route.dlq)
        else:
            await self._topology.declare_group(channel, route.topic, route.group)
        return False

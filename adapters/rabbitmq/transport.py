"""RabbitTransport: bus.transport.Transport on RabbitMQ through aio-pika.

aio-pika opens the connection and its channels; the hot paths (publish, consume, ack)
use each channel's aiormq layer directly, so a message costs one task and no wrapper
objects. See topology.py for what is declared, link.py for reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Collection

import aiormq.exceptions as amqp
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel

from adapters.rabbitmq import browse, topology
from adapters.rabbitmq.config import parse
from adapters.rabbitmq.consumer import RabbitConsumer
from adapters.rabbitmq.convert import properties
from adapters.rabbitmq.copies import Copier, Route
from adapters.rabbitmq.errors import broker_error, is_transient, publish_error
from adapters.rabbitmq.inbox import DIRECT_REPLY_TO, RabbitInbox
from adapters.rabbitmq.link import CLOSE_TIMEOUT, ChannelKeeper, Link
from adapters.rabbitmq.publish import (
    PUBLISH_TIMEOUT,
    ChannelSource,
    nacked,
    publish,
)
from bus.errors import ConnectionLost
from bus.message import Message
from bus.transport import Capabilities

log = logging.getLogger("bus.rabbitmq")


class RabbitTransport:
    """A connection to one RabbitMQ broker (or cluster) named by an amqp(s):// URL."""

    capabilities = Capabilities(
        ordered_per_key=False,  # members of a group compete on one queue
        persistent=True,
        replays_old_messages=False,  # a new group's queue starts empty
        counts_redeliveries=True,
    )

    def __init__(self, url: str) -> None:
        self.config = parse(url)
        self._topology = topology.Topology(self.config)
        self._link = Link(self.config, self._on_connect)
        # Copies made by retry and dead_letter, and replies, are always confirmed; topic
        # publishes go unconfirmed only when the URL says confirm=false.
        self._publisher = ChannelKeeper(
            self._link, _nothing, confirms=True, what="the publishing channel"
        )
        self._topic_publisher = self._publisher
        if not self.config.confirm:
            self._topic_publisher = ChannelKeeper(
                self._link, _nothing, confirms=False, what="the unconfirmed publishing channel"
            )
        self._copier = Copier(
            self._publisher,
            self._topology,
            self.config.user,
            bounded=self.config.max_length is not None,
        )
        self._consumers: set[RabbitConsumer] = set()
        self._inboxes: dict[str, RabbitInbox] = {}
        self._unreachable: dict[str, None] = {}
        """Reply addresses RabbitMQ closed the connection on (oldest first, bounded)."""

    def __repr__(self) -> str:
        return f"RabbitTransport({self.config.redacted!r})"

    async def connect(self) -> None:
        await self._link.open()
        try:
            await self._publisher.start()
            if self._topic_publisher is not self._publisher:
                await self._topic_publisher.start()
        except Exception as exc:
            await self._link.close()
            raise ConnectionLost(
                f"cannot open a channel on {self.config.redacted}: {exc}"
            ) from None

    async def close(self) -> None:
        for inbox in list(self._inboxes.values()):
            await inbox.close()
        for consumer in list(self._consumers):
            await consumer.close()
        await self._topic_publisher.close()
        await self._publisher.close()
        await self._link.close()

    async def publish(self, topic: str, message: Message) -> None:
        inbox = self._inboxes.get(message.reply_to) if message.reply_to else None
        channel: ChannelSource
        if inbox is not None and inbox.source is not None:
            props = properties(
                message, reply_to=DIRECT_REPLY_TO, persistent=False, user=self.config.user
            )
            channel = inbox.source
        else:
            props = properties(message, user=self.config.user)
            channel = self._topic_publisher
        await publish(
            channel,
            message.body,
            props,
            exchange=self.config.exchange,
            routing_key=topic,
            mandatory=False,
            nack_means_full=self.config.max_length is not None,
        )

    async def consume(
        self, topic: str, group: str, *, prefetch: int, ephemeral: bool = False
    ) -> RabbitConsumer:
        queue = topology.group_queue(self.config, topic, group)
        if ephemeral:
            queue = f"{queue}:ephemeral:{uuid.uuid4().hex[:16]}"
        dlq = f"{queue}:dlq" if ephemeral else topology.dead_letter_queue(self.config, topic, group)
        route = Route(topic=topic, group=group, queue=queue, dlq=dlq, ephemeral=ephemeral)
        count = self.config.prefetch or prefetch

        consumer = RabbitConsumer(
            functools.partial(self._copier.send, route), ephemeral=ephemeral, prefetch=count
        )

        async def setup(channel: AbstractChannel) -> None:
            if ephemeral:
                await self._topology.declare_ephemeral(channel, topic, queue)
            else:
                await self._topology.declare_group(channel, topic, group)
            await channel.basic_qos(prefetch_count=count)
            if consumer.fetching:  # a channel re-opened after stop_fetching takes nothing
                ok = await channel.basic_consume(queue, consumer.on_message)
                consumer.consuming(channel, str(ok.consumer_tag))

        keeper = ChannelKeeper(self._link, setup, confirms=False, what=f"consumer of {queue!r}")
        try:
            await keeper.start()
        except Exception as exc:
            raise broker_error(exc, f"declaring and consuming queue {queue!r}") from None
        self._consumers.add(consumer)

        async def on_close() -> None:
            self._consumers.discard(consumer)
            await keeper.close()
            if ephemeral:
                await self._delete_quietly(dlq)

        consumer.attach(on_close)
        return consumer

    async def _delete_quietly(self, queue: str) -> None:
        """Delete an ephemeral group's dead-letter queue if the connection is up now and
        the broker answers soon; it is exclusive, so it goes with the connection anyway."""
        channel = self._publisher.now()
        if channel is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await channel.queue_delete(queue)
        except Exception as exc:
            log.debug("deleting %r: %s", queue, exc)

    async def open_inbox(self) -> RabbitInbox:
        inbox = RabbitInbox()
        keeper = ChannelKeeper(self._link, inbox.setup, confirms=True, what="a reply inbox")
        try:
            await keeper.start()
        except Exception as exc:
            raise broker_error(exc, "consuming amq.rabbitmq.reply-to") from None

        async def on_close() -> None:
            self._inboxes.pop(inbox.address, None)
            await keeper.close()

        inbox.attach(keeper, on_close)
        self._inboxes[inbox.address] = inbox
        return inbox

    async def send(self, address: str, message: Message) -> None:
        """Publish a reply to a direct reply-to ``address``, confirmed; retried over a
        lost connection like any publish, but dropped once RabbitMQ has closed the
        connection on a reply to it: RabbitMQ 3.10 fails the whole connection (541
        INTERNAL_ERROR) on a reply to a channel whose node is down. The address is dead
        (its requester lost its node), and each retry would only fail the connection,
        with every consumer on it, again."""
        props = properties(message, persistent=False, user=self.config.user)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                while address not in self._unreachable:
                    raw = await self._publisher.current()
                    try:
                        # Never mandatory: RabbitMQ 3.10 was seen to return a mandatory
                        # reply to direct reply-to to its sender as well as deliver it.
                        await raw.basic_publish(
                            message.body, exchange="", routing_key=address, properties=props
                        )
                        return
                    except amqp.ConnectionInternalError:
                        self._unreachable[address] = None
                        while len(self._unreachable) > 1000:
                            del self._unreachable[next(iter(self._unreachable))]
                        log.warning(
                            "RabbitMQ failed the connection on a reply to %s: its requester's "
                            "node is down (RabbitMQ 3.10); replies to it are dropped",
                            address,
                        )
                    except Exception as exc:
                        if nacked(exc):  # waited out like a lost connection
                            self._publisher.renew(raw)
                        elif not is_transient(exc):
                            raise
                        await asyncio.sleep(0.05)  # the channel is being re-opened
        except Exception as exc:  # TimeoutError included: the connection stayed down
            raise publish_error(exc, f"reply address {address!r}") from None
        log.debug("dropped a reply to %s: its requester's node was lost", address)

    async def dead_letters(self, topic: str, group: str) -> AsyncGenerator[Message, None]:
        queue = topology.dead_letter_queue(self.config, topic, group)
        try:
            # aclosing: a caller leaving early gets the browsed letters put back before
            # it goes on, not whenever the abandoned generator is collected.
            async with contextlib.aclosing(browse.browse(self._link, queue)) as letters:
                async for message in letters:
                    yield message
        except Exception as exc:
            raise broker_error(exc, f"browsing queue {queue!r}") from None

    async def forget(self, topic: str, group: str) -> None:
        """Delete the group's queue and dead-letter queue, messages and all (bus.testing
        cleans up after a test with it); its delay queues expire by themselves."""
        queues = (
            topology.group_queue(self.config, topic, group),
            topology.dead_letter_queue(self.config, topic, group),
        )
        for queue in queues:
            try:
                channel = await self._publisher.current()
                await channel.queue_delete(queue)  # a missing queue is no error to RabbitMQ
            except Exception as exc:
                raise broker_error(exc, f"deleting queue {queue!r}") from None

    async def replay(
        self, topic: str, group: str, message_ids: Collection[str] | None = None
    ) -> int:
        dlq = topology.dead_letter_queue(self.config, topic, group)
        queue = topology.group_queue(self.config, topic, group)
        try:
            return await browse.replay(
                self._link, dlq, queue, user=self.config.user, ids=message_ids
            )
        except Exception as exc:
            raise broker_error(exc, f"replaying queue {dlq!r}") from None

    async def _on_connect(self, conn: AbstractConnection) -> None:
        self._topology.forget()
        channel = await conn.channel(publisher_confirms=False)
        try:
            await self._topology.declare_exchange(await channel.get_underlay_channel())
        finally:
            await channel.close()


async def _nothing(_channel: AbstractChannel) -> None:
    return None

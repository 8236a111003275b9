"""KafkaTransport: bus.transport.Transport on Kafka (or a Kafka-protocol broker) via aiokafka.

Topic = topic, group on a topic = consumer group ``<group>:<topic>`` (one per
subscription, see consumer.py), key = record key (so order per key holds by partition).
Every group on a topic also has a retry topic and a dead-letter topic of its own
(topics.py). aiokafka reconnects by itself with backoff; a first connect that
fails raises ConnectionLost naming the (redacted) URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Collection, Sequence

from adapters.kafka import dlq, topics
from adapters.kafka.config import parse
from adapters.kafka.consumer import KafkaConsumer
from adapters.kafka.convert import DUE, from_record, to_record
from adapters.kafka.delivery import due_ms
from adapters.kafka.inbox import INBOX_PREFIX, KafkaInbox, new_address
from adapters.kafka.producer import Producer
from adapters.kafka.watch import KafkaWatcher
from bus.errors import ConnectionLost, MessageTooLarge, PublishError
from bus.message import Message
from bus.transport import Capabilities

log = logging.getLogger("bus.kafka")


class KafkaTransport:
    """A connection to one Kafka cluster named by a kafka:// or kafka+ssl:// URL."""

    capabilities = Capabilities(
        ordered_per_key=True,  # a key maps to one partition, handed out in offset order
        persistent=True,  # Kafka's log (tansu's default memory:// storage is not)
        replays_old_messages=True,  # a new group starts at the earliest offset
        counts_redeliveries=True,  # by handed-out marks (marks.py): at most 1, like RabbitMQ's flag
    )

    def __init__(self, url: str) -> None:
        self.config = parse(url)
        self._topics = topics.Topics(self.config)
        self._producer = Producer(self.config)
        self._consumers: set[KafkaConsumer] = set()
        self._watchers: set[KafkaWatcher] = set()
        self._inboxes: dict[str, KafkaInbox] = {}
        # Dead letters are sent one at a time, so each is a record batch of its own: tansu
        # reports a partition's end offset as one past the start of its last batch, and
        # browsing stops at the end offset.
        self._dlq_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"KafkaTransport({self.config.redacted!r})"

    async def connect(self) -> None:
        await self._producer.start()
        try:
            await self._topics.start()
        except Exception as exc:
            await self._producer.stop()
            raise ConnectionLost(f"cannot connect to {self.config.redacted}: {exc}") from None

    async def close(self) -> None:
        for inbox in list(self._inboxes.values()):
            await inbox.close()
        for consumer in list(self._consumers):
            await consumer.close()
        for watcher in list(self._watchers):
            await watcher.close()
        self._watchers.clear()
        await self._producer.stop()
        await self._topics.close()

    async def _ready(self, topic: str) -> None:
        """Create ``topic`` unless this process knows it (made it, and no send to it failed
        since). A broker that does not answer within publish_timeout_ms is a PublishError,
        as for a send it does not confirm."""
        if self._topics.known(topic):
            return
        try:
            async with asyncio.timeout(self.config.publish_timeout_ms / 1000):
                await self._topics.ensure({topic: self.config.partitions})
        except (ConnectionLost, TimeoutError) as exc:
            raise PublishError(
                f"cannot publish to {topic!r}: {exc}"
                if str(exc)
                else f"cannot publish to {topic!r}: {self.config.redacted} did not create it "
                f"within {self.config.publish_timeout_ms} ms (publish_timeout_ms in the URL)"
            ) from None

    async def publish(self, topic: str, message: Message) -> None:
        if not self._topics.known(topic):  # a set look-up, not a coroutine, per message
            await self._ready(topic)
        key, headers = to_record(message)
        producer = self._producer
        try:
            # Queued in a batch shared with concurrent publishes (batches.py); the slow
            # way only while the topic's partitions are not known yet.
            queued = producer.queue(topic, message.body, key, headers)
            if queued is not None:
                await queued
            else:
                await producer.send(topic, message.body, key, headers)
        except PublishError:
            self._topics.forget(topic)  # made again before the next send (topics.py)
            producer.forget(topic)
            raise

    async def publish_many(self, topic: str, messages: Sequence[Message]) -> None:
        await self._ready(topic)
        records = []
        for message in messages:
            key, headers = to_record(message)
            records.append((message.body, key, headers))
        try:
            await self._producer.send_many(topic, records)
        except PublishError:
            self._topics.forget(topic)
            self._producer.forget(topic)
            raise

    async def consume(
        self, topic: str, group: str, *, prefetch: int, ephemeral: bool = False
    ) -> KafkaConsumer | KafkaWatcher:
        """Create the topic and the group's retry and DLQ topics, start a member.

        An ephemeral group is a reader without a consumer group (see adapters.kafka.watch).

        Returns once the member is subscribed, without waiting for the group join (2-3 s
        on tansu, group.initial.rebalance.delay on Kafka, for every subscription in
        turn): a group with no committed offset starts at the earliest one, so whatever
        is published after this returns reaches the group. ``prefetch`` bounds nothing
        here: Kafka holds no record for a member, so what is read ahead (``read_ahead``)
        is simply not committed and is dropped on revocation.
        """
        if ephemeral:
            return await self._watch(topic)
        retry = topics.retry_topic(topic, group)
        dlq_topic = topics.dead_letter_topic(topic, group)
        parts = self.config.partitions
        await self._topics.ensure({topic: parts, retry: parts, dlq_topic: 1})

        async def resend(message: Message, delay: float | None) -> None:
            # A dead letter names its partition: browsing reads that one alone, even if an
            # operator deleted the topic and the broker made it again with several.
            partition: int | None = dlq.DLQ_PARTITION
            if delay is None:
                key, headers = to_record(message)
                target, partitions = dlq_topic, 1
            else:
                key, headers = to_record(message, [(DUE, str(due_ms(delay)).encode())])
                target, partitions, partition = retry, parts, None
            # Dead letters one record per batch (see __init__); retries need no order.
            async with self._dlq_lock if delay is None else contextlib.nullcontext():
                try:
                    await self._producer.send(target, message.body, key, headers, partition)
                except MessageTooLarge:
                    raise
                except PublishError as exc:
                    # Deleted by an operator? Create it again and send once more; a second
                    # failure goes to the core, which gives the record back.
                    log.warning("a copy to %s failed (%s); creating it again", target, exc)
                    await self._topics.recreate({target: partitions})
                    await self._producer.send(target, message.body, key, headers, partition)

        async def recreate() -> None:
            # Dropped from its group: the broker may have restarted empty.
            await self._topics.recreate({topic: parts, retry: parts, dlq_topic: 1})

        members = self._consumers
        consumer = KafkaConsumer(
            self.config, [topic, retry], group, resend, members.discard, recreate
        )
        try:
            await consumer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await consumer.close()
            raise ConnectionLost(
                f"cannot consume {topic!r} on {self.config.redacted}: {exc}"
            ) from None
        self._consumers.add(consumer)
        return consumer

    async def _watch(self, topic: str) -> KafkaWatcher:
        await self._topics.ensure({topic: self.config.partitions})
        watcher = KafkaWatcher(self.config, topic)
        try:
            await watcher.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await watcher.close()
            raise ConnectionLost(
                f"cannot watch {topic!r} on {self.config.redacted}: {exc}"
            ) from None
        self._watchers.add(watcher)
        return watcher

    async def open_inbox(self) -> KafkaInbox:
        address = new_address()
        await self._topics.ensure({address: 1})
        inbox = KafkaInbox(self.config, address, self._inbox_closed)
        try:
            await inbox.start()
        except BaseException:
            await inbox.close()
            raise
        self._inboxes[address] = inbox
        return inbox

    async def _inbox_closed(self, address: str) -> None:
        self._inboxes.pop(address, None)
        await self._topics.delete(address)

    async def send(self, address: str, message: Message) -> None:
        key, headers = to_record(message)
        # A bus inbox has one partition: naming it spares aiokafka's partitioner.
        partition = 0 if address.startswith(INBOX_PREFIX) else None
        await self._producer.send(address, message.body, key, headers, partition)

    async def dead_letters(self, topic: str, group: str) -> AsyncGenerator[Message, None]:
        """Letters not yet replayed, from the DLQ topic (created if missing: empty)."""
        name = topics.dead_letter_topic(topic, group)
        await self._topics.ensure({name: 1})
        records = dlq.unreplayed(self.config, name, topics.replay_group(group))
        async with contextlib.aclosing(records):
            async for record in records:
                yield from_record(record)[0]

    async def forget(self, topic: str, group: str) -> None:
        """Delete the group's retry and dead-letter topics (bus.testing cleans up after a
        test with it), best effort. The topic itself is shared and stays; so do the
        group's committed offsets, which the broker expires by itself."""
        for name in (topics.retry_topic(topic, group), topics.dead_letter_topic(topic, group)):
            await self._topics.delete(name)

    async def replay(
        self, topic: str, group: str, message_ids: Collection[str] | None = None
    ) -> int:
        """Copy every unreplayed dead letter, or those with these ids, to the group's
        retry topic, due now (see dlq.py for how the others stay unreplayed)."""
        name = topics.dead_letter_topic(topic, group)
        retry = topics.retry_topic(topic, group)
        await self._topics.ensure({name: 1, retry: self.config.partitions})
        now = [(DUE, str(int(time.time() * 1000)).encode())]

        async def send(message: Message) -> None:
            key, headers = to_record(message, now)
            await self._producer.send(retry, message.body, key, headers)

        if message_ids is not None:
            moved = await dlq.replay_some(
                self.config, name, topics.replay_group(group), message_ids,
                send=send, park=functools.partial(self._park, name),
            )  # fmt: skip
        else:
            moved = 0
            records = dlq.replayed(self.config, name, topics.replay_group(group))
            async with contextlib.aclosing(records):
                async for record in records:
                    await send(from_record(record)[0])
                    moved += 1
        log.info("replayed %d dead letter(s) of %s to group %s", moved, topic, group)
        return moved

    async def _park(self, name: str, message: Message) -> None:
        """Write a dead letter again at the end of its topic, byte for byte (one record
        batch each, as ``consume`` parks them)."""
        key, headers = to_record(message)
        async with self._dlq_lock:
            await self._producer.send(name, message.body, key, headers, dlq.DLQ_PARTITION)

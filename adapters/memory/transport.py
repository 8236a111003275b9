"""The Transport of the embedded broker: consumers, deliveries and inboxes over Broker,
and the test kit's hooks (``bus.testing.probe``): what the broker holds, losing a
delivery on purpose, forgetting a group."""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import AsyncGenerator, Callable, Collection, Mapping, Sequence

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from adapters.memory.broker import Broker
from adapters.memory.config import MemoryConfig
from adapters.memory.queue import Entry, GroupQueue
from bus.clock import REAL, Clock
from bus.errors import PublishError
from bus.message import Message
from bus.testing.probe import Pending
from bus.transport import Capabilities

CAPABILITIES = Capabilities(
    ordered_per_key=True, persistent=False, replays_old_messages=False, counts_redeliveries=True
)


class MemoryDelivery:
    __slots__ = ("_consumer", "_entry", "message", "redeliveries")

    def __init__(self, consumer: MemoryConsumer, entry: Entry) -> None:
        self._consumer = consumer
        self._entry = entry
        self.message = entry.message
        self.redeliveries = entry.redeliveries

    def _settle(self) -> bool:
        """Mark settled; False if it already was, or went back to the queue."""
        if self._consumer._held.pop(id(self._entry), None) is None:
            return False
        self._consumer._queue.release(self.message.key)
        return True

    async def ack(self) -> None:
        self._settle()

    def ack_nowait(self) -> bool:
        self._settle()
        return True

    def payload(self) -> tuple[bytes, str | None]:
        return self.message.body, self.message.content_type

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        return self.message.headers

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        if id(self._entry) in self._consumer._held:
            copy = Entry(self.message.with_headers(dict(headers)))
            self._consumer._queue.put_later(copy, max(0.0, delay))
            self._settle()

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        if id(self._entry) in self._consumer._held:
            self._consumer._queue.dead.append(self.message.with_headers(dict(headers)))
            self._settle()

    async def give_back(self) -> None:
        entry = self._consumer._held.pop(id(self._entry), None)
        if entry is not None:  # to the front, its key still busy: order per key holds
            entry.redeliveries += 1
            self._consumer._queue.put_back([entry])


class MemoryConsumer:
    def __init__(self, queue: GroupQueue) -> None:
        self._queue = queue
        self._held: dict[int, Entry] = {}  # insertion order is delivery order
        self._waiting: set[anyio.Event] = set()
        self._stopped = [False]  # takes nothing more (a list: the queue's waiters read it)
        self._closed = False
        self.on_close: Callable[[], None] | None = None

    def __aiter__(self) -> MemoryConsumer:
        return self

    def poll(self) -> MemoryDelivery | None:
        if self._stopped[0]:
            return None
        entry = self._queue.try_take()
        if entry is None:
            return None
        self._held[id(entry)] = entry
        return MemoryDelivery(self, entry)

    async def __anext__(self) -> MemoryDelivery:
        entry = self._queue.try_take() if not self._stopped[0] else None
        if entry is None:
            entry = await self._queue.take(self._waiting, self._stopped)
            if entry is None:
                raise StopAsyncIteration
        self._held[id(entry)] = entry
        return MemoryDelivery(self, entry)

    async def stop_fetching(self) -> None:
        # Pull-based: nothing was taken that a handler does not hold, so nothing goes back.
        self._stopped[0] = True
        for event in list(self._waiting):
            event.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_fetching()
        if self.on_close is not None:
            self.on_close()
        held = list(self._held.values())
        self._held.clear()
        for entry in held:
            entry.redeliveries += 1
        self._queue.put_back(held)


class MemoryInbox:
    def __init__(self, broker: Broker) -> None:
        self.address = f"inbox.{uuid.uuid4().hex}"
        self._broker = broker
        send: MemoryObjectSendStream[Message]
        receive: MemoryObjectReceiveStream[Message]
        send, receive = anyio.create_memory_object_stream(math.inf)
        self._send, self._receive = send, receive
        broker.inboxes[self.address] = self._deliver

    def _deliver(self, message: Message) -> None:
        # Closed meanwhile: a reply nobody reads is dropped.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(message)

    def __aiter__(self) -> MemoryInbox:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._broker.inboxes.pop(self.address, None)
        self._send.close()

    def backlog(self) -> int:
        """Replies delivered here and not yet read."""
        return self._receive.statistics().current_buffer_used


class MemoryTransport:
    """``memory://[name]``: an embedded broker with the semantics of a real one."""

    capabilities = CAPABILITIES

    def __init__(self, url: str) -> None:
        self.config = MemoryConfig.from_url(url)
        self._broker: Broker | None = None
        self._consumers: list[MemoryConsumer] = []
        self._inboxes: list[MemoryInbox] = []
        self._clock: Clock = REAL

    def __repr__(self) -> str:
        return f"MemoryTransport({self.config.name!r})"

    def _connected(self) -> Broker:
        if self._broker is None:
            raise PublishError(
                f"memory broker {self.config.name!r}: the transport is not connected"
            )
        return self._broker

    def use_clock(self, clock: Clock) -> None:
        """Keep time on ``clock`` (the Bus's): retries fall due on it."""
        self._clock = clock

    async def connect(self) -> None:
        self._broker = Broker.named(self.config, self._clock)

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.close()
        for inbox in self._inboxes:
            await inbox.close()
        self._consumers.clear()
        self._inboxes.clear()
        self._broker = None

    async def publish(self, topic: str, message: Message) -> None:
        await self._connected().publish(topic, message)

    async def publish_many(self, topic: str, messages: Sequence[Message]) -> None:
        """One after another: each is held once its publish returns, so there is nothing
        to pipeline (and no task per message to pay for)."""
        broker = self._connected()
        for message in messages:
            await broker.publish(topic, message)

    async def consume(
        self, topic: str, group: str, *, prefetch: int, ephemeral: bool = False
    ) -> MemoryConsumer:
        # Pull-based: nothing is prefetched, so ``prefetch`` needs no buffer here.
        broker = self._connected()
        if ephemeral:
            group = f"{group}.{uuid.uuid4().hex}"
        consumer = MemoryConsumer(broker.queue(topic, group))
        if ephemeral:
            consumer.on_close = lambda: broker.unbind(topic, group)
        self._consumers.append(consumer)
        return consumer

    async def open_inbox(self) -> MemoryInbox:
        inbox = MemoryInbox(self._connected())
        self._inboxes.append(inbox)
        return inbox

    async def send(self, address: str, message: Message) -> None:
        deliver = self._connected().inboxes.get(address)
        if deliver is not None:
            deliver(message)

    async def dead_letters(self, topic: str, group: str) -> AsyncGenerator[Message, None]:
        queue = self._connected().find(topic, group)
        for message in list(queue.dead) if queue else []:
            yield message

    async def replay(
        self, topic: str, group: str, message_ids: Collection[str] | None = None
    ) -> int:
        queue = self._connected().find(topic, group)
        if queue is None:
            return 0
        if message_ids is None:
            letters, queue.dead = queue.dead, []
        else:
            letters, queue.dead = _pick(queue.dead, set(message_ids))
        for message in letters:
            queue.put(Entry(message))
        return len(letters)

    # -- the test kit's hooks (bus.testing.probe) -------------------------------------------

    def pending(self) -> list[Pending]:
        broker = self._connected()
        found: list[Pending] = []
        for topic, groups in broker.topics.items():
            for group, queue in groups.items():
                waiting = [*queue.ready, *(e for d in queue.blocked.values() for e in d)]
                for entry in waiting:
                    found.append(
                        Pending(topic, group, "ready", entry.message, None, entry.redeliveries)
                    )
                for due, _, entry in sorted(queue.delayed, key=lambda d: (d[0], d[1])):
                    found.append(Pending(topic, group, "delayed", entry.message, due))
        for consumer in self._consumers:
            queue = consumer._queue
            for entry in consumer._held.values():
                found.append(
                    Pending(queue.topic, queue.group, "held", entry.message, None,
                            entry.redeliveries)
                )  # fmt: skip
        for inbox in self._inboxes:
            for _ in range(inbox.backlog()):
                found.append(Pending(inbox.address, "", "reply", _NO_MESSAGE))
        return found

    def wake_due(self) -> None:
        """Wake consumers of every queue with a retry now due (after a clock moved)."""
        for groups in self._connected().topics.values():
            for queue in groups.values():
                queue.wake_if_due()

    def lose(self, topic: str, group: str, message_id: str) -> bool:
        for consumer in self._consumers:
            queue = consumer._queue
            if queue.topic != topic or queue.group != group:
                continue
            for key, entry in consumer._held.items():
                if entry.message.id == message_id:
                    del consumer._held[key]
                    entry.redeliveries += 1  # as close() counts a consumer's death
                    queue.put_back([entry])
                    return True
        return False

    async def forget(self, topic: str, group: str) -> None:
        broker = self._connected()
        broker.unbind(topic, group)
        broker.drop_if_unused()


_NO_MESSAGE = Message(id="", body=b"")


def _pick(dead: list[Message], ids: set[str]) -> tuple[list[Message], list[Message]]:
    """The letters with these ids (a second copy of one dropped), and the rest in order."""
    picked: list[Message] = []
    kept: list[Message] = []
    moved: set[str] = set()
    for message in dead:
        if message.id not in ids:
            kept.append(message)
        elif message.id not in moved:
            moved.add(message.id)
            picked.append(message)
    return picked, kept

"""The embedded broker: topics, their groups' queues, and inboxes.

Every Bus in a process whose URL names the same broker shares one instance, as they
would share a RabbitMQ or a Kafka cluster. A broker keeps time on one clock
(``bus.clock``), set by whoever opens it first: real time, or a test's virtual clock.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.memory.config import MemoryConfig
from adapters.memory.queue import Entry, GroupQueue
from bus.clock import REAL, Clock
from bus.errors import ConfigError
from bus.message import Message

_brokers: dict[str, Broker] = {}


class Broker:
    def __init__(self, config: MemoryConfig, clock: Clock = REAL) -> None:
        self.config = config
        self.clock = clock
        self.topics: dict[str, dict[str, GroupQueue]] = {}
        self.inboxes: dict[str, Callable[[Message], None]] = {}

    @classmethod
    def named(cls, config: MemoryConfig, clock: Clock = REAL) -> Broker:
        broker = _brokers.get(config.name)
        if broker is None:
            broker = _brokers[config.name] = cls(config, clock)
        elif broker.clock is not clock:
            raise ConfigError(
                f"memory broker {config.name!r} already runs on another clock "
                f"({broker.clock!r}); give this bus a memory:// URL of its own"
            )
        return broker

    def drop_if_unused(self) -> None:
        """Forget this broker once nothing is bound to it: a broker opened again by name
        later starts empty, as this one now is."""
        if not self.topics and not self.inboxes and _brokers.get(self.config.name) is self:
            del _brokers[self.config.name]

    def queue(self, topic: str, group: str) -> GroupQueue:
        """The queue of ``group`` on ``topic``, bound on first use; it outlives consumers."""
        groups = self.topics.setdefault(topic, {})
        queue = groups.get(group)
        if queue is None:
            queue = groups[group] = GroupQueue(
                topic, group, self.config.max_queue, self.config.overflow, self.clock
            )
        return queue

    def unbind(self, topic: str, group: str) -> None:
        """Drop ``group``'s queue on ``topic``, and whatever it still held."""
        groups = self.topics.get(topic)
        if groups is not None:
            groups.pop(group, None)
            if not groups:
                del self.topics[topic]

    def find(self, topic: str, group: str) -> GroupQueue | None:
        return self.topics.get(topic, {}).get(group)

    async def publish(self, topic: str, message: Message) -> None:
        """Append ``message`` to every group bound to ``topic``, waiting for room
        (or refusing, by the overflow setting) when a queue is full."""
        groups = self.topics.get(topic)
        if not groups:
            return
        queues = list(groups.values())
        while True:
            for queue in queues:
                queue.check_room()
            full = next((q for q in queues if q.full()), None)
            if full is None:
                break
            await full.wait_for_room()
        for queue in queues:
            queue.put(Entry(message))

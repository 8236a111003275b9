"""Which of a member's partitions are paused, and why.

A member that stops calling ``getmany`` for ``max_poll_interval_ms`` is dropped from its
group by aiokafka, and its partitions go to another member while it still holds their
records. So a member that must not read more keeps polling, with its partitions paused
(fetched no further; what aiokafka had buffered for them is dropped and read again on
resume). Paused: all of them while the read-ahead stays full or once fetching stopped;
the retry topic's while many retry records wait on timers (the main topic keeps flowing).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


class Pauses:
    def __init__(self, client: AIOKafkaConsumer, retry_topic: str) -> None:
        self._client = client
        self._retry_topic = retry_topic
        self.full = False
        self.stopped = False
        self.retries = False

    def set(
        self, *, full: bool | None = None, stopped: bool | None = None, retries: bool | None = None
    ) -> None:
        """Change a reason and pause or resume what it changes."""
        if full is not None:
            self.full = full
        if stopped is not None:
            self.stopped = stopped
        if retries is not None:
            self.retries = retries
        self.apply()

    def apply(self) -> None:
        """Make the client's paused partitions match the reasons (call it on assignment:
        a partition newly assigned starts unpaused)."""
        client = self._client
        assigned: set[TopicPartition] = set(client.assignment())
        if self.full or self.stopped:
            wanted = assigned
        elif self.retries:
            wanted = {tp for tp in assigned if tp.topic == self._retry_topic}
        else:
            wanted = set()
        paused: set[TopicPartition] = set(client.paused()) & assigned
        if wanted - paused:
            client.pause(*(wanted - paused))
        if paused - wanted:
            client.resume(*(paused - wanted))

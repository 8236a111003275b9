"""What a test kit may ask of an adapter beyond the Transport protocol: optional hooks,
looked up with ``getattr`` on the transport, that let ``TestBus`` see what the broker
holds, lose a delivery on purpose, and clean up after a test.

The embedded broker (``memory://``) offers all three. An adapter without ``pending``
runs with virtual time off and ``settle()`` on real time; one without ``lose`` cannot
inject a dropped consumer; one without ``forget`` leaves its queues behind.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol, runtime_checkable

from bus.message import Message

State = Literal["ready", "held", "delayed", "reply"]


class Pending(NamedTuple):
    """One message the broker holds and nobody has finished with yet."""

    topic: str
    group: str
    state: State
    """ready: waiting for a consumer; held: handed to one, not settled; delayed: a retry
    not yet due (``due`` on the broker's clock); reply: in an inbox, not yet read."""
    message: Message
    due: float | None = None
    redeliveries: int = 0


@runtime_checkable
class Inspectable(Protocol):
    def pending(self) -> list[Pending]:
        """Every message of this transport's broker that is ready, held, delayed, or an
        unread reply, now."""
        ...


@runtime_checkable
class Losable(Protocol):
    def lose(self, topic: str, group: str, message_id: str) -> bool:
        """Give the held delivery ``message_id`` of ``group`` on ``topic`` back to its
        group as if its consumer died holding it (a redelivery, counted). False when no
        such delivery is held."""
        ...


@runtime_checkable
class Forgetful(Protocol):
    async def forget(self, topic: str, group: str) -> None:
        """Delete what ``consume(topic, group)`` made on the broker (queues, groups,
        retry and dead-letter destinations). Idempotent."""
        ...


__all__ = ["Forgetful", "Inspectable", "Losable", "Pending", "State"]

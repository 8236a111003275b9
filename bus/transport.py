"""The whole interface between the core and a broker adapter.

``bus`` decides, adapters carry out: the core owns decoding, dispatch, concurrency and
what a handler's outcome means; an adapter owns topology, confirmed publishing,
consuming with acks, delayed redelivery, dead-letter parking and inboxes for replies.
No broker type appears here. Adapters translate their driver's exceptions into
``bus.errors`` at this boundary.

An adapter is found through the entry-point group ``bus.adapters`` by URL scheme; the
entry point names a callable that takes the URL string and returns a ``Transport``
(usually the class itself). It must not connect in that call.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping
from typing import Protocol, runtime_checkable

import msgspec

from bus.message import Message


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What an adapter promises beyond the common contract (like Watermill's Features).

    The conformance suite skips a case only when a flag here says the adapter cannot do it.
    """

    ordered_per_key: bool
    """Within one group at handler concurrency 1, messages with one key arrive in order."""
    persistent: bool
    """Messages survive a restart of the broker."""
    replays_old_messages: bool
    """A group subscribing for the first time also receives messages published before."""
    counts_redeliveries: bool
    """``Delivery.redeliveries`` rises when a consumer dies holding a message."""


class Delivery(Protocol):
    """One message handed to one consumer of a group, to be settled exactly once.

    Settling is idempotent: after the first of ack, retry or dead_letter has returned,
    further calls do nothing. A delivery never settled goes back to its group when its
    consumer closes or dies.
    """

    @property
    def message(self) -> Message:
        """The message (an adapter may build it only when first asked: see ``payload``)."""

    redeliveries: int
    """How many times the broker handed this copy out before (0 when it cannot tell)."""

    def payload(self) -> tuple[bytes, str | None]:
        """The message's body and content type, all the core reads of a message it hands
        to a handler without a Context. An adapter that builds ``message`` when first
        asked (Kafka, from the record's headers) reads these two without building it."""

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        """The message's headers among ``names`` (its trace context, read for every
        message while tracing is on), as ``message.headers`` has them; more may be there.
        An adapter that builds ``message`` when first asked reads only these."""

    async def ack(self) -> None:
        """Done with it: the broker forgets the message for this group. Called on the hot
        path with no timer around it, so it must not wait on a broker round trip (write
        the ack and return; a lost ack means a redelivery, which at least once allows)."""

    def ack_nowait(self) -> bool:
        """``ack`` at once, where acking is bookkeeping that needs no I/O (Kafka's commit
        position, the embedded broker): True if done. False, changing nothing, where it
        sends something (RabbitMQ's ack frame): the core then awaits ``ack``. The core
        tries this first on the hot path; it saves an awaited call per message."""

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        """Redeliver a copy, with ``headers`` in place of the original's, to this group
        only, no sooner than ``delay`` seconds from now; then ack the original.

        The wait must block no other message and survive a restart of the consumer.
        """

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        """Park a copy, body unchanged and ``headers`` in place of the original's, in this
        group's dead-letter destination; return once the broker holds it, then ack.

        ``retry`` and ``dead_letter`` raise (``PublishError``, ``ConnectionLost``) when the
        copy was not taken; the delivery is then still unsettled, and the core gives it
        back. Header values that did not change keep their original native form (see
        ``Message.native``): a copy of a foreign message is byte-identical but for the
        headers the core added or removed.
        """

    async def give_back(self) -> None:
        """Return the message, unsettled, to its group for redelivery (to any member),
        counted as a redelivery where the broker counts them. Used when settling failed:
        it must not wait on the broker beyond a short bound, must never raise, and must
        free what the delivery held (its prefetch slot, its key, its partition's commit
        position), so the messages behind it keep flowing."""


class Consumer(Protocol):
    """Deliveries of one topic to one member of one group.

    The consumer exists (the group is bound to the topic) when ``Transport.consume``
    returns, so a message published after that reaches the group.
    """

    def __aiter__(self) -> AsyncIterator[Delivery]: ...

    async def __anext__(self) -> Delivery:
        """The next delivery. Cancel-safe: a cancelled call loses no message.

        Several tasks may await it at once; each delivery goes to exactly one of them.
        Raises StopAsyncIteration once the consumer is closed.
        """
        ...

    async def stop_fetching(self) -> None:
        """Take nothing more from the broker (a graceful close's first step). Deliveries
        already handed out can still be settled until ``close``. What was fetched but
        never handed out goes back to the group now, not counted as a redelivery (its
        ``ctx.attempt`` stays what it was), quorum queues included. Afterwards ``poll``
        returns None and ``__anext__`` raises StopAsyncIteration. Idempotent."""

    async def close(self) -> None:
        """Stop consuming. Every delivery not yet settled goes back to the group (counted
        as a redelivery where the broker counts them). Idempotent."""

    # Optional fast path, looked up once per consumer: ``def poll(self) -> Delivery | None``
    # returns a delivery already at hand without waiting (None if there is none), which
    # spares the core a cancel scope per message. Adapters that buffer should provide it.


class Inbox(Protocol):
    """An address only this process reads: where replies to its requests arrive."""

    address: str

    def __aiter__(self) -> AsyncIterator[Message]: ...

    async def __anext__(self) -> Message:
        """The next reply; raises StopAsyncIteration once closed. Cancel-safe."""
        ...

    async def close(self) -> None:
        """Stop reading; replies sent here later are dropped. Idempotent."""


@runtime_checkable
class Transport(Protocol):
    """A connection to one broker."""

    capabilities: Capabilities

    async def connect(self) -> None:
        """Connect, failing loudly (``ConnectionLost`` or ``ConfigError``) if the broker
        cannot be reached. Dropped connections later are re-established by the adapter."""

    async def close(self) -> None:
        """Close every consumer and inbox of this transport, then the connection."""

    async def publish(self, topic: str, message: Message) -> None:
        """Return once the broker holds the message for every group bound to ``topic``
        (confirms, acks=all, the in-memory append). Raise ``PublishError`` when it was
        not taken; never succeed silently. A message whose ``reply_to`` is one of this
        transport's inbox addresses is a request: replies go to that inbox."""

    # Optional, looked up once: ``async def publish_many(self, topic, messages: Sequence
    # [Message]) -> None`` with publish's guarantee for every message, pipelined (all sent,
    # then all confirmed). Without it the core publishes them concurrently.

    async def consume(
        self, topic: str, group: str, *, prefetch: int, ephemeral: bool = False
    ) -> Consumer:
        """Bind ``group`` to ``topic`` (creating what the broker needs, idempotently)
        and start a member of it. Members of one group compete for messages; each group
        gets every message. ``prefetch`` bounds the deliveries held and unsettled.

        An ``ephemeral`` group has this one member and lives only as long as it: it gets
        what is published while it exists and leaves nothing behind on the broker (an
        exclusive auto-delete queue, a consumer without a group). Used for watching a
        topic, e.g. presence announcements."""
        ...

    async def open_inbox(self) -> Inbox:
        """Open an inbox for replies to this process's requests."""
        ...

    async def send(self, address: str, message: Message) -> None:
        """Send ``message`` to one inbox (a reply). An address nobody reads any more drops
        the message without error."""

    def dead_letters(self, topic: str, group: str) -> AsyncGenerator[Message, None]:
        """Browse, without removing, every dead letter of ``group`` on ``topic`` present
        now, oldest first, then end. A generator, so a caller leaving early can close it
        (``contextlib.aclosing``) and have whatever the browse holds released at once."""
        ...

    async def replay(
        self, topic: str, group: str, message_ids: Collection[str] | None = None
    ) -> int:
        """Move the dead letters of ``group`` on ``topic`` back to that group alone, their
        headers as they are; return how many moved.

        ``message_ids`` None moves them all. Otherwise only the letters with these ids
        move (an empty collection moves none), and every other letter stays where it
        was, in order, to be browsed and replayed later; a letter moved alone is never
        moved again. An id with no letter is no error: it moves nothing. A letter
        parked twice under one id (its copy confirmed, then the original handled again)
        moves and counts once; its second copy is dropped.
        """
        ...

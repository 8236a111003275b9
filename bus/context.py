"""Context: what a handler may know about the message it handles, and how to speak on.

``ctx.publish`` and ``ctx.request`` carry the conversation on: the correlation id and this
message as the cause; the trace context follows by itself, as the handler runs inside
its consumer span.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bus.errors import BusError
from bus.message import CAUSATION_ID, Message

if TYPE_CHECKING:
    from bus.transaction import Transaction

T = TypeVar("T")


class Speaker(Protocol):
    """What a handler speaks through: publish and request (a ``bus.Bus`` is one)."""

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> str: ...

    async def request(
        self,
        topic: str,
        payload: object,
        *,
        response: type[Any],
        timeout: float = 5.0,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> Any: ...

    def transaction(self, connection: object | None = None) -> Transaction: ...


class Context:
    """Facts about the message being handled. Built once per delivery, cheaply."""

    __slots__ = ("_headers", "_speaker", "_transaction", "attempt", "group", "message", "topic")
    _transaction: Transaction  # set only for idempotent handlers (bus.inbox): no cost else

    def __init__(
        self,
        speaker: Speaker,
        message: Message,
        topic: str,
        group: str,
        attempt: int,
    ) -> None:
        self._speaker = speaker
        self.message = message
        self.topic = topic
        self.group = group
        self.attempt = attempt
        """Which call of the handler this is, counting from 1."""
        self._headers: Mapping[str, str] | None = None

    @property
    def message_id(self) -> str:
        return self.message.id

    @property
    def key(self) -> str | None:
        return self.message.key

    @property
    def correlation_id(self) -> str:
        """The conversation this message belongs to (its own id if it starts one)."""
        return self.message.correlation_id or self.message.id

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's headers, read-only."""
        if self._headers is None:
            self._headers = MappingProxyType(self.message.headers)
        return self._headers

    @property
    def transaction(self) -> Transaction:
        """The store transaction this handler runs in, with its inbox row: write with
        ``ctx.transaction.connection``, publish with ``ctx.transaction.publish`` (sent if,
        and once, it commits). Only in handlers subscribed with ``idempotent=True``."""
        try:
            return self._transaction
        except AttributeError:
            raise BusError(
                "ctx.transaction exists only in handlers subscribed with idempotent=True "
                "on a Bus with a store (Bus(..., store=URL))"
            ) from None

    def open_transaction(self, connection: object | None = None) -> Transaction:
        """A new transaction on the store of the bus running this handler: ``async with
        ctx.open_transaction() as tx``. For responders and handlers not subscribed with
        ``idempotent=True`` (which run inside ``ctx.transaction`` already): a request gets
        no inbox row, because a repeated request must be answered again."""
        return self._speaker.transaction(connection)

    def _carried(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = dict(headers) if headers else {}
        out[CAUSATION_ID] = self.message.id
        return out

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish as part of this conversation."""
        await self._speaker.publish(
            topic,
            payload,
            key=key,
            headers=self._carried(headers),
            correlation_id=self.correlation_id,
        )

    async def request(
        self,
        topic: str,
        payload: object,
        *,
        response: type[T],
        timeout: float = 5.0,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Request as part of this conversation."""
        result: T = await self._speaker.request(
            topic,
            payload,
            response=response,
            timeout=timeout,
            key=key,
            headers=self._carried(headers),
            correlation_id=self.correlation_id,
        )
        return result

    def __repr__(self) -> str:
        return (
            f"Context(topic={self.topic!r}, group={self.group!r}, "
            f"message_id={self.message_id!r}, attempt={self.attempt})"
        )


__all__ = ["Context", "Speaker"]

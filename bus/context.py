"""Context: what a handler may know about the message it handles, and how to speak on.

``ctx.publish`` and ``ctx.request`` carry the conversation on: the correlation id and this
message as the cause; the trace context follows by itself, as the handler runs inside
its consumer span.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from bus.message import CAUSATION_ID, Message

if TYPE_CHECKING:
    from bus.bus import Bus

T = TypeVar("T")


class Context:
    """Facts about the message being handled. Built once per delivery, cheaply."""

    __slots__ = ("_bus", "_headers", "attempt", "group", "message", "topic")

    def __init__(
        self,
        bus: Bus,
        message: Message,
        topic: str,
        group: str,
        attempt: int,
    ) -> None:
        self._bus = bus
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
        await self._bus.publish(
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
        return await self._bus.request(
            topic,
            payload,
            response=response,
            timeout=timeout,
            key=key,
            headers=self._carried(headers),
            correlation_id=self.correlation_id,
        )

    def __repr__(self) -> str:
        return (
            f"Context(topic={self.topic!r}, group={self.group!r}, "
            f"message_id={self.message_id!r}, attempt={self.attempt})"
        )


__all__ = ["Context"]

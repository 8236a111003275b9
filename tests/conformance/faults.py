"""Fault injection where a broker will not fail on demand: a Transport wrapper whose
deliveries refuse or stall their next few settles, over any real adapter.

Only the settle calls are wrapped; everything else (and every settle after the faults
are used up) goes to the real adapter, so what the broker does with a given-back
message is real.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

import bus
from bus.errors import MessageTooLarge, PublishError
from bus.message import Message
from bus.transport import Consumer, Delivery, Transport


class Faults:
    """How many of the next calls of each settle operation fail, and how."""

    def __init__(self) -> None:
        self._planned: dict[str, list[str]] = {}
        self.injected: list[tuple[str, str]] = []  # (operation, message id)
        self.given_back: list[str] = []

    def refuse(self, operation: str, times: int = 1) -> None:
        """The next ``times`` calls raise PublishError, as a broker refusing the copy."""
        self._planned.setdefault(operation, []).extend(["refuse"] * times)

    def too_large(self, operation: str, times: int = 1) -> None:
        """The next ``times`` calls raise MessageTooLarge, as a broker refusing the copy for
        its size (a body near the limit plus the ``bus-dlq-*`` headers)."""
        self._planned.setdefault(operation, []).extend(["too_large"] * times)

    def stall(self, operation: str, times: int = 1) -> None:
        """The next ``times`` calls never return, as a broker that cannot take it in time."""
        self._planned.setdefault(operation, []).extend(["stall"] * times)

    async def apply(self, operation: str, message: Message) -> None:
        planned = self._planned.get(operation)
        if not planned:
            return
        fault = planned.pop(0)
        self.injected.append((operation, message.id))
        if fault == "refuse":
            raise PublishError(f"injected: the broker refused the {operation} copy")
        if fault == "too_large":
            raise MessageTooLarge(f"injected: the {operation} copy is too large")
        await anyio.sleep_forever()


class FaultyDelivery:
    def __init__(self, inner: Delivery, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self.message = inner.message
        self.redeliveries = inner.redeliveries

    def ack_nowait(self) -> bool:
        return False  # every ack goes through ``ack``, where faults are injected

    def payload(self) -> tuple[bytes, str | None]:
        return self.message.body, self.message.content_type

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        return self.message.headers

    async def ack(self) -> None:
        await self._faults.apply("ack", self.message)
        await self._inner.ack()

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        await self._faults.apply("retry", self.message)
        await self._inner.retry(delay, headers)

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        await self._faults.apply("dead_letter", self.message)
        await self._inner.dead_letter(headers)

    async def give_back(self) -> None:
        self._faults.given_back.append(self.message.id)
        await self._inner.give_back()


class FaultyConsumer:
    def __init__(self, inner: Consumer, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __aiter__(self) -> FaultyConsumer:
        return self

    async def __anext__(self) -> FaultyDelivery:
        return FaultyDelivery(await self._inner.__anext__(), self._faults)

    async def stop_fetching(self) -> None:
        await self._inner.stop_fetching()

    async def close(self) -> None:
        await self._inner.close()


class FaultyTransport:
    """``inner`` with its consumers' deliveries wrapped; all else passes through."""

    def __init__(self, inner: Transport, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def consume(
        self, topic: str, group: str, *, prefetch: int, ephemeral: bool = False
    ) -> FaultyConsumer:
        inner = await self._inner.consume(topic, group, prefetch=prefetch, ephemeral=ephemeral)
        return FaultyConsumer(inner, self._faults)


def with_faults(b: bus.Bus, faults: Faults) -> bus.Bus:
    """``b`` (not yet started) consuming through ``faults``."""
    b._transport = FaultyTransport(b._transport, faults)  # type: ignore[assignment]
    return b

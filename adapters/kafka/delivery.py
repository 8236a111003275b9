"""One record handed to one handler; settling is idempotent."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bus.message import Message

if TYPE_CHECKING:
    from adapters.kafka.consumer import KafkaConsumer, Partition


class KafkaDelivery:
    """bus.transport.Delivery for a Kafka record.

    ``redeliveries`` is 1 for a record an earlier owner read and did not commit (the
    handed-out marks of marks.py tell), else 0: Kafka keeps no per-record count.
    """

    __slots__ = ("_consumer", "_offset", "_part", "_settled", "message", "redeliveries")

    def __init__(
        self,
        consumer: KafkaConsumer,
        part: Partition,
        offset: int,
        message: Message,
        redeliveries: int = 0,
    ) -> None:
        self.message = message
        self.redeliveries = redeliveries
        self._consumer = consumer
        self._part = part
        self._offset = offset
        self._settled = False

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._consumer.settle(self._part, self._offset)

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        await self._resend(dict(headers), max(0.0, delay))

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        await self._resend(dict(headers), None)

    async def _resend(self, headers: dict[str, str], delay: float | None) -> None:
        if self._settled:
            return
        self._settled = True  # a second call meanwhile must not send a second copy
        try:
            await self._consumer.resend(self.message.with_headers(headers), delay)
        except BaseException:
            self._settled = False  # not settled: left for redelivery
            raise
        self._consumer.settle(self._part, self._offset)


def due_ms(delay: float) -> int:
    """When a copy retried ``delay`` seconds from now is due, in epoch ms (rounded up)."""
    return int((time.time() + delay) * 1000) + 1

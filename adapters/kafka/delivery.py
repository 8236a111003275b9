"""One record handed to one handler; settling is idempotent."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka.structs import ConsumerRecord

from adapters.kafka.convert import content_type_of, from_record, headers_of
from bus.errors import BusError, PublishError
from bus.message import Message

if TYPE_CHECKING:
    from adapters.kafka.consumer import KafkaConsumer
    from adapters.kafka.partition import Partition

log = logging.getLogger("bus.kafka")


class KafkaDelivery(msgspec.Struct, eq=False):
    """bus.transport.Delivery for a Kafka record.

    ``redeliveries`` is 1 for a record an earlier owner read and did not commit (the
    handed-out marks of marks.py tell), else 0, plus how often this member gave it back:
    Kafka keeps no per-record count.

    ``message`` is built from the record when first asked: a handler without a Context
    needs only ``payload`` (body and content type), and building the envelope from the
    record's headers was the largest part of the consume path the raw client does not
    have.

    A msgspec Struct, not a class with ``__init__``: one is made per record handed out,
    and a Struct's constructor runs in C (a third of the cost). Compared by identity.
    """

    _consumer: KafkaConsumer
    _part: Partition
    _offset: int
    _record: ConsumerRecord[Any, Any]
    redeliveries: int = 0
    _given: int = 0  # how often this member gave the record back before
    _settled: bool = False
    _message: Message | None = None

    @property
    def message(self) -> Message:
        message = self._message
        if message is None:
            message = self._message = from_record(self._record)[0]
        return message

    def payload(self) -> tuple[bytes, str | None]:
        record = self._record
        value: bytes | None = record.value
        return (value if value is not None else b""), content_type_of(record)

    def headers_for(self, names: frozenset[str]) -> Mapping[str, str]:
        message = self._message
        return message.headers if message is not None else headers_of(self._record, names)

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            self._consumer.settle(self._part, self._offset)

    def ack_nowait(self) -> bool:
        if not self._settled:
            self._settled = True
            self._consumer.settle(self._part, self._offset)
        return True

    async def retry(self, delay: float, headers: Mapping[str, str]) -> None:
        await self._resend(dict(headers), max(0.0, delay))

    async def dead_letter(self, headers: Mapping[str, str]) -> None:
        await self._resend(dict(headers), None)

    async def _resend(self, headers: dict[str, str], delay: float | None) -> None:
        """Produce the copy, then settle; if the copy was not taken, raise and leave the
        delivery unsettled (the core gives it back)."""
        if self._settled:
            return
        self._settled = True  # a second call meanwhile must not send a second copy
        try:
            await self._consumer.resend(self.message.with_headers(headers), delay)
        except BusError:
            self._settled = False
            raise
        except Exception as exc:
            self._settled = False
            where = "dead-letter" if delay is None else "retry"
            raise PublishError(f"the {where} copy was not produced: {exc}") from exc
        except BaseException:  # cancelled (the core's settle timeout): not settled
            self._settled = False
            raise
        self._consumer.settle(self._part, self._offset)

    async def give_back(self) -> None:
        """Hand the record out again from this member (it owns the partition), counted
        as one more redelivery; immediate, never raises."""
        if self._settled:
            return
        self._settled = True
        try:
            self._consumer.give_back(self._part, self._offset, self._record, self._given)
        except Exception:  # never raises: unsettled, it goes to the next owner at the latest
            log.exception("could not give message %s back", self.message.id)


def due_ms(delay: float) -> int:
    """When a copy retried ``delay`` seconds from now is due, in epoch ms (rounded up)."""
    return int((time.time() + delay) * 1000) + 1

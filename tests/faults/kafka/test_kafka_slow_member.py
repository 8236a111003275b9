"""A slow member stays in its group (issue 11, item 4).

Handlers far slower than the read-ahead drains within ``max_poll_interval_ms``: each
member holds a full read-ahead for longer than that interval. It must keep polling
(its partitions paused) so aiokafka never drops it from the group, and never hand out
records of partitions it no longer owns. The ledger: every message handled, none by
two members at once.
"""

from __future__ import annotations

import logging
import uuid

import anyio
import pytest

from adapters.kafka import KafkaTransport
from adapters.kafka.consumer import KafkaConsumer
from bus.message import Message, new_id
from tests.brokers.kafka import Tansu

TOTAL = 40
HANDLER = 1.0  # seconds per message: read_ahead=10 takes ~10 s, over 3 s max_poll_interval
OPTIONS = "read_ahead=10&max_poll_interval_ms=3000"


class Ledger:
    """Which member handles which message, and when two did at once."""

    def __init__(self) -> None:
        self.running: dict[bytes, str] = {}
        self.handled: dict[bytes, list[str]] = {}
        self.overlaps: list[tuple[bytes, str, str]] = []

    async def handle(self, member: str, consumer: KafkaConsumer) -> None:
        while True:
            delivery = await consumer.__anext__()
            body = delivery.message.body
            other = self.running.get(body)
            if other is not None:
                self.overlaps.append((body, other, member))
            self.running[body] = member
            try:
                await anyio.sleep(HANDLER)  # the handler's work, not a synchronisation
            finally:
                if self.running.get(body) == member:
                    del self.running[body]
            self.handled.setdefault(body, []).append(member)
            await delivery.ack()


async def test_slow_members_keep_their_partitions_and_never_handle_a_message_twice_at_once(
    kafka_broker: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "aiokafka")
    tag = uuid.uuid4().hex[:8]
    topic, group = f"slow.{tag}", f"g-{tag}"
    url = f"{kafka_broker.url()}&{OPTIONS}"
    ledger = Ledger()
    a, b, publisher = KafkaTransport(url), KafkaTransport(url), KafkaTransport(url)
    for t in (a, b, publisher):
        await t.connect()
    try:
        first = await a.consume(topic, group, prefetch=1)
        assert isinstance(first, KafkaConsumer)
        for n in range(TOTAL):
            message = Message(id=new_id(), body=str(n).encode(), key=f"k{n}")
            await publisher.publish(topic, message)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.handle, "a", first)
            with anyio.fail_after(30):  # a is busy, its read-ahead full of held records
                while len(ledger.handled) < 3:
                    await anyio.sleep(0.05)
            second = await b.consume(topic, group, prefetch=1)
            assert isinstance(second, KafkaConsumer)
            tg.start_soon(ledger.handle, "b", second)
            with anyio.fail_after(90):
                while len(ledger.handled) < TOTAL:
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    finally:
        for t in (a, b, publisher):
            with anyio.CancelScope(shield=True):
                await t.close()
    twice = {body: who for body, who in ledger.handled.items() if len(who) > 1}
    assert not ledger.overlaps, f"handled by two members at once: {ledger.overlaps}"
    assert set(ledger.handled) == {str(n).encode() for n in range(TOTAL)}
    assert {m for who in ledger.handled.values() for m in who} == {"a", "b"}, "no rebalance"
    assert not twice, f"handled twice: {twice}"
    dropped = [r.getMessage() for r in caplog.records if "UnknownMemberId" in r.getMessage()]
    assert not dropped, f"a member was dropped from the group: {dropped[0]}"

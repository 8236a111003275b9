"""Kafka redeliveries are counted by handed-out marks (adapters/kafka/marks.py): a record
that a member took and did not settle comes to the next owner with redeliveries 1; what a
member only read ahead, and dropped when it left cleanly, comes as new."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import anyio
from aiokafka import TopicPartition

from adapters.kafka import KafkaTransport
from adapters.kafka.claims import CLAIM_GAP, Claims
from adapters.kafka.config import parse
from adapters.kafka.consumer import KafkaConsumer
from adapters.kafka.marks import Marks
from adapters.kafka.partition import Partition

from .test_kafka_transport import msg, take

ROOT = Path(__file__).resolve().parents[3]
HOLDER = Path(__file__).with_name("holder.py")


async def test_a_clean_close_counts_what_it_held_and_not_what_it_read_ahead(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    first = await transport.consume(topic, group, prefetch=10)
    for body in (b"acked", b"held", b"read-ahead"):
        await transport.publish(topic, msg(body, key="k"))
    acked = await take(first)
    assert (acked.message.body, acked.redeliveries) == (b"acked", 0)
    await acked.ack()
    held = await take(first)
    assert (held.message.body, held.redeliveries) == (b"held", 0)
    await first.close()  # "held" unsettled; "read-ahead" fetched, never handed out

    second = await transport.consume(topic, group, prefetch=10)
    again = await take(second)
    assert (again.message.body, again.redeliveries) == (b"held", 1)
    await again.ack()
    ahead = await take(second)
    assert (ahead.message.body, ahead.redeliveries) == (b"read-ahead", 0)
    await ahead.ack()
    await transport.publish(topic, msg(b"new", key="k"))
    new = await take(second)
    assert (new.message.body, new.redeliveries) == (b"new", 0)
    await new.ack()
    await second.close()


async def test_a_member_closed_before_any_record_leaves_none_counted(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    """Its marks were claimed a window ahead on assignment; closing lowers them again."""
    topic, group = names
    idle = await transport.consume(topic, group, prefetch=10)
    with anyio.fail_after(30):  # until the claim made on assignment has landed
        while not idle._parts or not all(p.mark > 0 for p in idle._parts.values()):
            await anyio.sleep(0.02)
    await idle.close()
    await transport.publish(topic, msg(b"first", key="k"))
    second = await transport.consume(topic, group, prefetch=10)
    d = await take(second)
    assert (d.message.body, d.redeliveries) == (b"first", 0)
    await d.ack()
    await second.close()


async def test_a_killed_member_leaves_its_records_counted(
    kafka_url: str, transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, group = names
    await (await transport.consume(topic, group, prefetch=10)).close()  # topics, group
    for body in (b"taken", b"read-ahead"):
        await transport.publish(topic, msg(body, key="k"))
    holder = await anyio.open_process(
        # read_ahead=1: the dead member's mark then reaches at most two records past
        # what it read (marks are claimed two read-ahead windows ahead).
        [sys.executable, str(HOLDER), kafka_url + "&read_ahead=1", topic, group],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stderr=None,
    )
    try:
        assert holder.stdout is not None
        with anyio.fail_after(30):
            said = (await holder.stdout.receive()).decode()
        assert said.strip() == "took taken"
    finally:
        holder.kill()  # SIGKILL: no clean close, no commit
        await holder.wait()
    after = [b"after-1", b"after-2", b"after-3"]
    for body in after:
        await transport.publish(topic, msg(body, key="k"))

    rescuer = await transport.consume(topic, group, prefetch=10)
    seen = []
    for _ in range(5):
        d = await take(rescuer, timeout=30)
        seen.append((d.message.body, d.redeliveries))
        await d.ack()
    await rescuer.close()
    # What the dead member took counts. What it read ahead counts too if it got that
    # far (as RabbitMQ counts a prefetched message), and so may the two records its mark
    # reached past that; what was published after it died, past its mark, is new.
    assert [body for body, _ in seen] == [b"taken", b"read-ahead", *after]
    assert seen[0] == (b"taken", 1)
    assert seen[-1] == (b"after-3", 0)


async def test_a_rebalance_flags_no_first_delivery_as_redelivered(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    """A member that gives partitions up cleanly lowers its marks to what it handed out,
    so what it had only read ahead reaches the new owner as new."""
    topic, group = names
    total = 40
    first = await transport.consume(topic, group, prefetch=10)
    for n in range(total):
        await transport.publish(topic, msg(str(n).encode(), key=f"k{n % 8}"))
    seen: list[tuple[str, bytes, int]] = []  # (member, body, redeliveries)
    for _ in range(10):  # the rest is read ahead
        d = await take(first)
        seen.append(("first", d.message.body, d.redeliveries))
        await d.ack()
    second = await transport.consume(topic, group, prefetch=10)
    with anyio.fail_after(30):
        await second.assigned.wait()  # first gave partitions up with records read ahead

    async def drain(name: str, consumer: KafkaConsumer) -> None:
        while len({body for _, body, _ in seen}) < total:
            with anyio.move_on_after(0.2):
                d = await consumer.__anext__()
                seen.append((name, d.message.body, d.redeliveries))
                await d.ack()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, "first", first)
            tg.start_soon(drain, "second", second)
    await first.close()
    await second.close()
    assert any(name == "second" for name, _, _ in seen), "no rebalance was tested"
    firsts: dict[bytes, int] = {}
    for _, body, redeliveries in seen:
        firsts.setdefault(body, redeliveries)
    # A record may come twice (at least once), and then its second coming counts; its
    # first coming never does.
    assert firsts == {str(n).encode(): 0 for n in range(total)}


async def test_claims_under_a_burst_are_few_and_always_ahead_of_the_batch(
    kafka_url: str, transport: KafkaTransport, names: tuple[str, str]
) -> None:
    """A busy member claims its marks a growing stride ahead (claims.py), so a burst of
    batches costs a few commits, not one per half stride; every batch is still covered
    by a committed mark before it is handed out, and the stride shrinks back once the
    burst is over."""
    topic, group = names
    await (await transport.consume(topic, group, prefetch=10)).close()  # the topic
    tp = TopicPartition(topic, 0)
    marks = Marks(parse(kafka_url), f"{group}:{topic}")
    part = Partition(tp)
    strides: list[int] = []  # of each claim: how far past what was fetched
    commit = marks.commit

    async def counted(claimed: dict[TopicPartition, int]) -> bool:
        strides.append(claimed[tp] - part.fetched)
        return await commit(claimed)

    marks.commit = counted  # type: ignore[method-assign]
    await marks.start()
    try:
        marks.own([tp])
        claims = Claims(marks, {tp: part}, stride=20)
        offset = 0

        async def batch(size: int = 10) -> None:
            nonlocal offset
            records = [SimpleNamespace(offset=offset + i) for i in range(size)]
            offset += size
            await claims.before_handout({tp: records})
            assert part.mark >= offset  # committed past the batch before handing out

        with anyio.fail_after(30):
            for _ in range(200):  # 2,000 records: 200 claims at a fixed stride of 20
                await batch()
            assert len(strides) < 40, strides
            grown = strides[-1]
            assert grown > 20
            await anyio.sleep(5 * CLAIM_GAP)  # the burst is over
            claimed = len(strides)
            for _ in range(grown // 10 + 1):  # until the grown stride is used up
                await batch()
            assert len(strides) > claimed
            assert strides[claimed] < grown  # shrunk back
    finally:
        await marks.stop()

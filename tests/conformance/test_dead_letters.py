"""Contract 5: one dead letter per failed message, body and original headers
byte-identical, the bus-dlq-* headers all present; replay goes to that group only."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import anyio
import msgspec
import pytest

import bus
from tests.conformance.helpers import Item, letters_of, unique, wait_until

DLQ_HEADERS = {
    "bus-dlq-reason",
    "bus-dlq-exception-type",
    "bus-dlq-exception-message",
    "bus-dlq-exception-stacktrace",
    "bus-dlq-original-topic",
    "bus-dlq-consumer-group",
    "bus-dlq-attempts",
    "bus-dlq-first-failed-at",
    "bus-dlq-failed-at",
    "bus-dlq-host",
}


class LedgerError(Exception):
    pass


async def test_dead_letter_headers_are_complete_and_originals_byte_identical(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    seen: list[bus.Context] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.05))
    async def fail(item: Item, ctx: bus.Context) -> None:
        seen.append(ctx)
        raise LedgerError("x" * 5000 + " ünïcode")

    async with bus.Bus(bus_url, services=[svc]):
        message_id = await publisher.publish(
            topic, Item(1, "héllo"), key="k1", headers={"x-origin": "tést", "x-n": "1"}
        )
        [letter] = await letters_of(publisher, topic, group, 1)
        # Browsing removes nothing.
        assert len(await letters_of(publisher, topic, group, 1)) == 1
    assert len(seen) == 2
    assert letter.message_id == message_id
    # Compared with what was published, not with what the bus read back.
    assert letter.body == msgspec.json.encode(Item(1, "héllo"))
    original = {
        k: v
        for k, v in letter.headers.items()
        if not k.startswith("bus-dlq-") and k not in ("traceparent", "tracestate")
    }
    assert original == {"x-origin": "tést", "x-n": "1", "bus-payload-type": "Item"}
    assert set(letter.headers) >= DLQ_HEADERS
    h = letter.headers
    assert h["bus-dlq-reason"] == "failed"
    assert h["bus-dlq-exception-type"] == f"{__name__}.LedgerError"
    assert len(h["bus-dlq-exception-message"].encode()) <= 1024
    assert h["bus-dlq-exception-message"].startswith("xxx")
    assert "LedgerError" in h["bus-dlq-exception-stacktrace"]
    assert len(h["bus-dlq-exception-stacktrace"].encode()) <= 8192
    assert h["bus-dlq-original-topic"] == topic
    assert h["bus-dlq-consumer-group"] == group
    assert h["bus-dlq-attempts"] == "2"
    first_failed = datetime.fromisoformat(h["bus-dlq-first-failed-at"])
    failed = datetime.fromisoformat(h["bus-dlq-failed-at"])
    assert first_failed.utcoffset() is not None and first_failed.utcoffset().total_seconds() == 0
    assert first_failed <= failed
    host, _, pid = h["bus-dlq-host"].rpartition(":")
    assert host and pid.isdigit()


async def test_replay_goes_to_that_group_only_and_a_second_failure_replaces_exception_headers(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    failing, healthy = unique("g"), unique("g")
    calls: dict[str, list[int]] = {failing: [], healthy: []}
    fail_with: list[type[Exception]] = [ValueError]
    svc_failing, svc_healthy = bus.Service(failing), bus.Service(healthy)

    @svc_failing.subscribe(topic, retry=bus.Retry(attempts=1))
    async def fails(item: Item) -> None:
        calls[failing].append(item.n)
        raise fail_with[0](f"try {len(calls[failing])}")

    @svc_healthy.subscribe(topic)
    async def fine(item: Item) -> None:
        calls[healthy].append(item.n)

    async with bus.Bus(bus_url, services=[svc_failing, svc_healthy]):
        await publisher.publish(topic, Item(1))
        await publisher.publish(topic, Item(2))
        first = await letters_of(publisher, topic, failing, 2)
        await wait_until(lambda: len(calls[healthy]) == 2)
        assert [d async for d in publisher.dead_letters(topic, group=healthy)] == []

        fail_with[0] = KeyError
        assert await publisher.replay(topic, group=failing) == 2
        await wait_until(lambda: len(calls[failing]) == 4)
        second = await letters_of(publisher, topic, failing, 2)
        assert await publisher.replay(topic, group=healthy) == 0
    assert sorted(calls[healthy]) == [1, 2], "replay reached another group"
    assert sorted(calls[failing]) == [1, 1, 2, 2]
    assert len(second) == 2
    before = {d.message_id: d for d in first}
    for letter in second:
        old = before[letter.message_id]
        assert letter.body == old.body
        for kept in ("bus-dlq-original-topic", "bus-dlq-consumer-group", "bus-dlq-first-failed-at"):
            assert letter.headers[kept] == old.headers[kept]
        assert old.headers["bus-dlq-exception-type"] == "builtins.ValueError"
        assert letter.headers["bus-dlq-exception-type"] == "builtins.KeyError"
        assert (
            letter.headers["bus-dlq-exception-message"] != old.headers["bus-dlq-exception-message"]
        )


async def test_replay_of_a_fixed_handler_empties_the_dead_letters(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    broken = [True]
    done: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        if broken[0]:
            raise RuntimeError("bug")
        done.append(item.n)

    async with bus.Bus(bus_url, services=[svc]):
        for i in range(5):
            await publisher.publish(topic, Item(i))
        await letters_of(publisher, topic, group, 5)
        broken[0] = False
        assert await publisher.replay(topic, group=group) == 5
        await wait_until(lambda: len(done) == 5)
        assert [d async for d in publisher.dead_letters(topic, group=group)] == []
    assert sorted(done) == list(range(5))


async def test_browsing_always_ends_also_where_nothing_was_ever_parked(
    publisher: bus.Bus, topic: str, group: str
) -> None:
    with anyio.fail_after(20):
        assert [d async for d in publisher.dead_letters(topic, group=group)] == []
        assert await publisher.replay(topic, group=group) == 0
        # Leaving a browse early releases it; the next one starts afresh and ends.
        async with contextlib.aclosing(publisher.dead_letters(topic, group=group)) as letters:
            async for _ in letters:
                break
        assert [d async for d in publisher.dead_letters(topic, group=group)] == []


def _as_seen(letters: list[bus.DeadLetter]) -> list[tuple[str, dict[str, str], bytes]]:
    return [(d.message_id, d.headers, d.body) for d in letters]


async def test_replaying_one_of_three_leaves_the_other_two_browsable_and_replayable(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    broken = [True]
    done: list[bytes] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        if broken[0]:
            raise RuntimeError("bug")
        done.append(msgspec.json.encode(item))

    async with bus.Bus(bus_url, services=[svc]):
        for i in range(3):
            await publisher.publish(topic, Item(i), key=f"k{i}")
        first, middle, last = await letters_of(publisher, topic, group, 3)
        broken[0] = False

        # One from between the others: they stay, in order, byte for byte.
        assert await publisher.replay(topic, group=group, message_ids=[middle.message_id]) == 1
        await wait_until(lambda: len(done) == 1)
        assert done == [middle.body]
        left = [d async for d in publisher.dead_letters(topic, group=group)]
        assert _as_seen(left) == _as_seen([first, last])
        # Replayed alone, it is never replayed again.
        assert await publisher.replay(topic, group=group, message_ids=[middle.message_id]) == 0

        # The oldest alone, then the one left with all the rest.
        assert await publisher.replay(topic, group=group, message_ids={first.message_id}) == 1
        left = [d async for d in publisher.dead_letters(topic, group=group)]
        assert _as_seen(left) == _as_seen([last])
        assert await publisher.replay(topic, group=group) == 1
        await wait_until(lambda: len(done) == 3)
        assert [d async for d in publisher.dead_letters(topic, group=group)] == []
        assert await publisher.replay(topic, group=group) == 0
    assert sorted(done) == sorted([first.body, middle.body, last.body]), "one handled twice"


async def test_replaying_an_id_that_is_not_there_moves_nothing(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    calls: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        calls.append(item.n)
        raise RuntimeError("bug")

    async with bus.Bus(bus_url, services=[svc]):
        for i in range(2):
            await publisher.publish(topic, Item(i))
        before = await letters_of(publisher, topic, group, 2)
        assert await publisher.replay(topic, group=group, message_ids=["no-such-id"]) == 0
        assert await publisher.replay(topic, group=group, message_ids=[]) == 0
        bad: list[Any] = ["a-message-id", [""], [7]]
        for ids in bad:  # a lone id is a string, itself a collection: refused, not split
            with pytest.raises(bus.ConfigError, match="message_ids must be a collection"):
                await publisher.replay(topic, group=group, message_ids=ids)
        after = [d async for d in publisher.dead_letters(topic, group=group)]
        assert _as_seen(after) == _as_seen(before)
        # Nothing went back to the group: replaying them all moves both, each handled once.
        assert await publisher.replay(topic, group=group) == 2
        await wait_until(lambda: len(calls) == 4)
        await letters_of(publisher, topic, group, 2)
    assert sorted(calls) == [0, 0, 1, 1]

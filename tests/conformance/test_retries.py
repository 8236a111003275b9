"""Contract 4: retries follow bus.Retry, wait at least their backoff, block nothing else,
and end in exactly one dead letter."""

from __future__ import annotations

import time

import bus
from tests.conformance.helpers import Item, Marker, letters_of, unique, wait_until


async def test_k_failures_give_k_plus_1_calls_and_no_retry_before_its_backoff(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    policy = bus.Retry(attempts=4, backoff=0.15, max_backoff=0.4)
    calls: list[tuple[float, int]] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=policy)
    async def flaky(item: Item, ctx: bus.Context) -> None:
        calls.append((time.monotonic(), ctx.attempt))
        if ctx.attempt <= 3:  # k = 3 failures
            raise ConnectionError(f"transient {ctx.attempt}")

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(1))
        await wait_until(lambda: len(calls) == 4)
        async for _ in publisher.dead_letters(topic, group=group):
            raise AssertionError("a message that finally succeeded was dead-lettered")
    assert [attempt for _, attempt in calls] == [1, 2, 3, 4]
    for k in range(1, 4):
        waited = calls[k][0] - calls[k - 1][0]
        assert waited >= policy.floor(k) - 0.005, f"retry {k} came after {waited:.3f}s"


async def test_a_waiting_retry_blocks_no_other_message(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    failed_at: list[float] = []
    good_at: list[float] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=2, backoff=2.0))
    async def handle(item: Item) -> None:
        if item.n == 0:
            failed_at.append(time.monotonic())
            raise ValueError("fails once, retried in 2 s")
        good_at.append(time.monotonic())

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(0), key="same")
        for i in range(1, 6):
            await publisher.publish(topic, Item(i), key="same")
        await wait_until(lambda: len(good_at) == 5)
        assert failed_at, "the failing message was handled first"
        assert max(good_at) - failed_at[0] < 2.0, "healthy messages waited for the retry"
        await wait_until(lambda: len(failed_at) == 2)
    assert failed_at[1] - failed_at[0] >= 2.0 - 0.005


async def test_exhausted_retries_leave_exactly_one_dead_letter_and_no_more_delivery(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    calls: list[int] = []
    markers: list[str] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=3, backoff=0.05))
    async def doomed(item: Item) -> None:
        calls.append(item.n)
        raise RuntimeError("always fails")

    marker_topic = unique("t")

    @svc.subscribe(marker_topic)
    async def marker(m: Marker) -> None:
        markers.append(m.label)

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(9))
        await wait_until(lambda: len(calls) == 3)
        letters = await letters_of(publisher, topic, group, 1)
        # The dead letter is confirmed before the original is acked: once the group has
        # moved on to a later message, no copy of the doomed one is left to deliver.
        await publisher.publish(marker_topic, Marker("after"))
        await wait_until(lambda: markers == ["after"])
    assert calls == [9, 9, 9]
    assert len(letters) == 1
    assert letters[0].reason == "failed"
    assert letters[0].attempts == 3
    assert letters[0].exception_type == "builtins.RuntimeError"


async def test_reject_dead_letters_at_once_without_retry(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    calls: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=5, backoff=0.01))
    async def picky(item: Item) -> None:
        calls.append(item.n)
        raise bus.Reject("order total must be positive")

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(-1))
        letters = await letters_of(publisher, topic, group, 1)
    assert calls == [-1]
    assert letters[0].reason == "rejected"
    assert letters[0].exception_message == "order total must be positive"
    assert letters[0].attempts == 1


async def test_retry_on_narrows_what_is_retried(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    calls: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=5, backoff=0.01, on=(ConnectionError,)))
    async def handle(item: Item) -> None:
        calls.append(item.n)
        raise KeyError("not a transient error")

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(1))
        letters = await letters_of(publisher, topic, group, 1)
    assert calls == [1]
    assert letters[0].reason == "failed"
    assert letters[0].exception_type == "builtins.KeyError"


async def test_undecodable_payload_dead_letters_without_calling_the_handler(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    calls: list[Item] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=5, backoff=0.01))
    async def handle(item: Item) -> None:
        calls.append(item)

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, b"\xff\x00 garbage")
        await publisher.publish(topic, b'{"n": "not a number"}')
        await publisher.publish(topic, Marker("wrong schema"))
        await publisher.publish(topic, Item(5))
        letters = await letters_of(publisher, topic, group, 3)
        await wait_until(lambda: len(calls) == 1)
    assert calls == [Item(5)]
    assert {d.reason for d in letters} == {"undecodable"}
    assert all(d.exception_type == "bus.errors.DecodeError" for d in letters)
    assert {d.body for d in letters} == {
        b"\xff\x00 garbage",
        b'{"n": "not a number"}',
        b'{"label":"wrong schema"}',
    }

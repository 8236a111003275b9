"""Contract 10: nothing is ever held. Whatever makes settling fail, the message goes back
to its group (or is dead-lettered with a reason) within a bounded time, and the messages
behind it keep flowing. Brokers do not refuse a copy on demand, so the refusals and
stalls here are injected in front of the real adapter (tests/conformance/faults.py);
what the broker then does with the message given back is real.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import anyio
import pytest

import bus
from bus.message import Message, new_id
from bus.transport import Capabilities
from tests.conformance.faults import Faults, with_faults
from tests.conformance.helpers import Item, letters_of, wait_until


@pytest.mark.parametrize("fault", ["refuse", "stall"])
async def test_a_dead_letter_copy_not_taken_goes_back_and_the_key_keeps_flowing(
    bus_url: str, publisher: bus.Bus, topic: str, group: str, fault: str
) -> None:
    faults = Faults()
    getattr(faults, fault)("dead_letter")
    seen: list[tuple[int, int]] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=1))
    async def handle(item: Item, ctx: bus.Context) -> None:
        seen.append((item.n, ctx.attempt))
        if item.n == 0:
            raise bus.Reject("poison")

    async with bus.Bus(bus_url, services=[svc]):
        pass  # the group exists before anything is published
    b = with_faults(bus.Bus(bus_url, services=[svc], settle_timeout=1.0), faults)
    async with b:
        for n in range(5):  # one key: the four behind the poison wait on it
            await publisher.publish(topic, Item(n), key="k")
        await wait_until(lambda: {n for n, _ in seen} >= set(range(5)))
        letters = await letters_of(b, topic, group, 1)
    assert faults.injected and faults.given_back, "the fault was not exercised"
    assert len(letters) == 1 and letters[0].reason == "rejected"
    poison = [attempt for n, attempt in seen if n == 0]
    assert len(poison) == 2, f"the poison message ran {poison}: given back once, then parked"


async def test_a_retry_copy_refused_goes_back_and_counts_an_attempt(
    bus_url: str, publisher: bus.Bus, topic: str, group: str, capabilities: Capabilities
) -> None:
    faults = Faults()
    faults.refuse("retry")
    attempts: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=5, backoff=0.01))
    async def handle(item: Item, ctx: bus.Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")

    async with with_faults(bus.Bus(bus_url, services=[svc]), faults):
        await publisher.publish(topic, Item(1))
        await wait_until(lambda: bool(attempts) and attempts[-1] >= 3)
    assert faults.given_back, "the refused retry was not given back"
    if capabilities.counts_redeliveries:
        assert attempts == [1, 2, 3]


async def test_acks_that_fail_give_the_message_back_instead_of_holding_it(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    faults = Faults()
    faults.refuse("ack", times=2)
    handled: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item) -> None:
        handled.append(item.n)

    async with bus.Bus(bus_url, services=[svc]):
        pass
    numbers: dict[str, int] = {}  # message id -> item number
    async with with_faults(bus.Bus(bus_url, services=[svc]), faults):
        for n in range(3):
            numbers[await publisher.publish(topic, Item(n), key="k")] = n
        # At least once: the two whose ack failed ran again; none was lost or held.
        await wait_until(lambda: len(handled) == 5)
    refused = [message_id for _, message_id in faults.injected]
    assert faults.given_back == refused and len(refused) == 2
    # Which message's ack the second refusal hits depends on what came first: the one
    # given back, or one prefetched behind it (RabbitMQ prefetches two per handler).
    assert Counter(handled) == Counter([0, 1, 2] + [numbers[i] for i in refused])


@pytest.mark.parametrize(
    "forged",
    [
        {"bus-attempt": "three"},
        {"bus-attempt": "-4"},
        {"bus-attempt": ""},
        {"bus-deadline": "whenever"},
        {"bus-deadline": "nan"},
        {"traceparent": "00-zz-not-a-trace-01"},
    ],
)
async def test_headers_the_core_cannot_read_do_not_stop_a_message(
    bus_url: str, publisher: bus.Bus, topic: str, group: str, forged: dict[str, str]
) -> None:
    got: list[tuple[int, int]] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item, ctx: bus.Context) -> None:
        got.append((item.n, ctx.attempt))

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, Item(1), headers=forged, key="k")
        await publisher.publish(topic, Item(2), key="k")
        await wait_until(lambda: len(got) == 2)
    assert got == [(1, 1), (2, 1)]


async def test_an_unknown_content_type_is_dead_lettered_and_the_next_flows(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    got: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item) -> None:
        got.append(item.n)

    async with bus.Bus(bus_url, services=[svc]) as b:
        odd = Message(id=new_id(), body=b'{"n": 0}', key="k", content_type="text/x-forged")
        await b.transport.publish(topic, odd)
        await publisher.publish(topic, Item(1), key="k")
        await wait_until(lambda: got == [1])
        letters = await letters_of(b, topic, group, 1)
    assert letters[0].reason == "undecodable"


async def test_a_handler_raising_cancelled_error_itself_fails_but_keeps_its_worker(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    got: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        if item.n == 0:
            raise asyncio.CancelledError()  # e.g. from awaiting a task someone cancelled
        got.append(item.n)

    async with bus.Bus(bus_url, services=[svc]) as b:
        await publisher.publish(topic, Item(0), key="k")
        await publisher.publish(topic, Item(1), key="k")
        await wait_until(lambda: got == [1])
        letters = await letters_of(b, topic, group, 1)
    assert letters[0].reason == "failed"
    assert letters[0].exception_type == "asyncio.exceptions.CancelledError"


class Unencodable:
    """Not a type msgspec can encode."""


async def test_a_reply_that_cannot_be_encoded_reaches_the_caller_as_remote_error(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    svc = bus.Service(group)

    @svc.respond(topic)
    async def answer(item: Item) -> Item:
        if item.n == 0:
            return Unencodable()  # type: ignore[return-value]
        return Item(item.n, "x" * 4096)

    async with bus.Bus(bus_url, services=[svc], max_message_size=1024):
        with anyio.fail_after(10):  # a RequestTimeout would take the full 30 s
            with pytest.raises(bus.RemoteError, match="cannot encode Unencodable"):
                await publisher.request(topic, Item(0), response=Item, timeout=30)
            with pytest.raises(bus.RemoteError, match="over max_message_size"):
                await publisher.request(topic, Item(1), response=Item, timeout=30)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("cannot even say what went wrong")


async def test_an_error_that_cannot_be_printed_is_dead_lettered_all_the_same(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    got: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        if item.n == 0:
            raise Unprintable()
        got.append(item.n)

    async with bus.Bus(bus_url, services=[svc]) as b:
        await publisher.publish(topic, Item(0), key="k")
        await publisher.publish(topic, Item(1), key="k")
        await wait_until(lambda: got == [1])
        [letter] = await letters_of(b, topic, group, 1)
    assert letter.reason == "failed"
    assert letter.exception_message == f"<unprintable {__name__}.Unprintable>"


async def test_a_dead_letter_too_large_with_its_headers_is_parked_without_its_stack_trace(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    faults = Faults()
    faults.too_large("dead_letter")
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=1, retry=bus.Retry(attempts=1))
    async def handle(item: Item) -> None:
        raise bus.Reject("no room " + "x" * 2000)

    async with with_faults(bus.Bus(bus_url, services=[svc]), faults) as b:
        await publisher.publish(topic, Item(1))
        [letter] = await letters_of(b, topic, group, 1)
    assert faults.injected and not faults.given_back
    assert letter.reason == "rejected"
    assert letter.exception_type == "bus.errors.Reject"
    assert letter.headers["bus-dlq-exception-stacktrace"] == ""
    assert len(letter.exception_message or "") <= 128

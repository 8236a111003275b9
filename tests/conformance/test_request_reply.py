"""Contract 6: replies match their requests under load; timeouts leave nothing behind."""

from __future__ import annotations

import logging

import anyio
import pytest

import bus
from tests.conformance.helpers import Item, unique, wait_until


def echo_service(topic: str, *, delay: float = 0.0) -> tuple[bus.Service, list[int]]:
    calls: list[int] = []
    svc = bus.Service(unique("echo"))

    @svc.respond(topic, concurrency=64)
    async def echo(item: Item, ctx: bus.Context) -> Item:
        calls.append(item.n)
        if delay:
            await anyio.sleep(delay)
        if item.n < 0:
            raise ValueError(f"negative: {item.n}")
        return Item(item.n * 2, f"re:{item.text}:{ctx.correlation_id}")

    return svc, calls


async def test_a_thousand_requests_in_flight_get_their_own_replies(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    svc, _ = echo_service(topic)
    replies: dict[int, Item] = {}

    async def ask(n: int) -> None:
        replies[n] = await publisher.request(topic, Item(n, str(n)), response=Item, timeout=30)

    async with bus.Bus(bus_url, services=[svc]), anyio.create_task_group() as tg:
        for n in range(1000):
            tg.start_soon(ask, n)
    assert len(replies) == 1000
    for n, reply in replies.items():
        assert reply.n == n * 2
        assert reply.text.startswith(f"re:{n}:")
    assert publisher.pending_requests == 0


async def test_request_carries_the_callers_correlation_id(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    svc, _ = echo_service(topic)
    async with bus.Bus(bus_url, services=[svc]):
        reply = await publisher.request(
            topic, Item(1, "a"), response=Item, timeout=10, correlation_id="conv-9"
        )
    assert reply.text == "re:a:conv-9"


async def test_timeout_raises_and_leaves_nothing_pending_and_a_late_reply_is_dropped(
    bus_url: str, publisher: bus.Bus, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The responder starts before the caller's deadline (so it does not skip the
    # request) and answers after it.
    svc, calls = echo_service(topic, delay=2.5)
    caplog.set_level(logging.INFO, logger="bus.requests")
    async with bus.Bus(bus_url, services=[svc]):
        with pytest.raises(bus.RequestTimeout, match=topic):
            await publisher.request(topic, Item(1), response=Item, timeout=1.5)
        assert publisher.pending_requests == 0
        await wait_until(lambda: "dropped a late or unknown reply" in caplog.text)
        # The inbox still works after dropping it.
        reply = await publisher.request(topic, Item(2), response=Item, timeout=10)
    assert reply.n == 4
    assert calls == [1, 2]


async def test_no_responder_times_out(bus_url: str, publisher: bus.Bus) -> None:
    with pytest.raises(bus.RequestTimeout):
        await publisher.request(unique("t"), Item(1), response=Item, timeout=0.3)
    assert publisher.pending_requests == 0


async def test_a_responders_exception_reaches_the_caller_as_remote_error(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    svc, _ = echo_service(topic)
    async with bus.Bus(bus_url, services=[svc]):
        with pytest.raises(bus.RemoteError) as caught:
            await publisher.request(topic, Item(-3), response=Item, timeout=10)
        # The responder is still alive.
        assert (await publisher.request(topic, Item(3), response=Item, timeout=10)).n == 6
    assert "builtins.ValueError" in str(caught.value)
    assert "negative: -3" in str(caught.value)
    assert caught.value.error_type == "builtins.ValueError"


async def test_an_undecodable_request_gets_an_error_reply(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    svc, calls = echo_service(topic)
    async with bus.Bus(bus_url, services=[svc]):
        with pytest.raises(bus.RemoteError, match="DecodeError"):
            await publisher.request(topic, b"not json", response=Item, timeout=10)
    assert calls == []


async def test_a_request_whose_caller_gave_up_is_not_run_later(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    svc, calls = echo_service(topic)
    async with bus.Bus(bus_url, services=[svc]):
        pass  # the responder's group exists, and its only member is gone
    with pytest.raises(bus.RequestTimeout):
        await publisher.request(topic, Item(1), response=Item, timeout=0.5)
    async with bus.Bus(bus_url, services=[svc]):
        reply = await publisher.request(topic, Item(2), response=Item, timeout=10)
    assert reply.n == 4
    assert calls == [2], "the expired request ran after its caller had given up"

"""Contracts 6 and 8 where a responder is involved (issue 11, items 2 and 3): a reply the
broker did not take still reaches the caller at once, as ``RemoteError``; and a responder
still running while its bus closes answers its caller before the bus goes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

import bus
from bus.errors import PublishError
from bus.message import Message
from tests.conformance.helpers import Item, wait_until

Send = Callable[[str, Message], Awaitable[None]]


async def test_a_reply_the_broker_refuses_reaches_the_caller_as_remote_error(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    svc = bus.Service(group)

    @svc.respond(topic)
    async def answer(item: Item) -> Item:
        return Item(item.n * 2)

    async with bus.Bus(bus_url, services=[svc]) as responder:
        transport = responder.transport
        real: Send = transport.send
        refused: list[str] = []

        async def refuse_the_first_reply(address: str, message: Message) -> None:
            """The broker does not take the reply itself; the few bytes saying so go."""
            if not refused:
                refused.append(message.id)
                raise PublishError("injected: the broker refused the reply")
            await real(address, message)

        transport.send = refuse_the_first_reply  # type: ignore[method-assign]
        with anyio.fail_after(10):  # a RequestTimeout would take the full 30 s
            with pytest.raises(bus.RemoteError, match="refused the reply") as caught:
                await publisher.request(topic, Item(1), response=Item, timeout=30)
            assert caught.value.error_type == "bus.errors.PublishError"
            # The responder lives on and the next reply goes through.
            assert await publisher.request(topic, Item(2), response=Item, timeout=30) == Item(4)
        assert len(refused) == 1, "the fault was not exercised"
    letters = [d async for d in publisher.dead_letters(topic, group=group)]
    assert letters == [], "a request answered with an error reply is not parked"


async def test_a_responder_running_at_close_still_replies(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    """A deploy must not turn a request in progress into a timeout or an error: the
    responder's bus stays able to reply until its handler finishes."""
    started = anyio.Event()
    release = anyio.Event()
    svc = bus.Service(group)

    @svc.respond(topic, concurrency=1)
    async def answer(item: Item) -> Item:
        started.set()
        await release.wait()
        return Item(item.n, "answered during close")

    replies: list[Item] = []

    async def ask() -> None:
        replies.append(await publisher.request(topic, Item(5), response=Item, timeout=30))

    b = bus.Bus(bus_url, services=[svc], close_timeout=20)
    await b.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(20):
                await started.wait()
            tg.start_soon(b.close)
            await wait_until(lambda: b._closing)
            release.set()
            with anyio.fail_after(20):  # well before the request's own 30 s timeout
                while not replies:
                    await anyio.sleep(0.01)
    finally:
        await b.close()
    assert replies == [Item(5, "answered during close")]
    letters = [d async for d in publisher.dead_letters(topic, group=group)]
    assert letters == [], f"a request in progress was dead-lettered by a close: {letters}"

"""The group queue's waiters: a delayed entry is never left without one to watch it."""

from __future__ import annotations

import anyio

from adapters.memory.queue import Entry, GroupQueue
from bus.message import Message


async def test_a_delayed_entry_is_watched_after_the_waiter_that_saw_it_leaves() -> None:
    # Found by the stateful contract test: a retry's wake-up went to a member that was
    # closing; it left, and the remaining member slept on with no deadline.
    queue = GroupQueue("t", "g", max_len=100, overflow="block")
    leaving_waits, staying_waits = set[anyio.Event](), set[anyio.Event]()
    got: list[Entry | None] = []

    async def leaving(scope: anyio.CancelScope) -> None:
        with scope:
            await queue.take(leaving_waits, [False])

    async def staying() -> None:
        got.append(await queue.take(staying_waits, [False]))

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(leaving, scope)  # first in line: the retry wakes this one
        with anyio.fail_after(5):
            while not leaving_waits:
                await anyio.lowlevel.checkpoint()
        (first_wait,) = leaving_waits
        tg.start_soon(staying)
        with anyio.fail_after(5):
            while not staying_waits:
                await anyio.lowlevel.checkpoint()
        entry = Entry(Message(id="m", body=b"", headers={}))
        queue.put_later(entry, 0.2)
        with anyio.fail_after(5):  # it woke, saw the due time, and sleeps towards it
            while not leaving_waits or first_wait in leaving_waits:
                await anyio.lowlevel.checkpoint()
        scope.cancel()  # ... and leaves before then
        with anyio.fail_after(5):
            while not got:
                await anyio.sleep(0.01)
    assert got == [entry]

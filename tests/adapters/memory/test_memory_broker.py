"""What only the embedded broker shows: its bounded queues push back on publishers, and
buses of one process share a broker by name."""

from __future__ import annotations

import anyio
import pytest

import bus
from tests.conformance.helpers import Item, unique, wait_until


async def test_a_full_queue_makes_publishers_wait_until_there_is_room() -> None:
    url = f"memory://{unique('bp')}?max_queue=3"
    release = anyio.Event()
    handled: list[int] = []
    svc = bus.Service("slow")

    @svc.subscribe("t", concurrency=1)
    async def slow(item: Item) -> None:
        await release.wait()
        handled.append(item.n)

    published: list[int] = []
    async with bus.Bus(url, services=[svc]) as b:

        async def publish_all() -> None:
            for i in range(10):
                await b.publish("t", Item(i))
                published.append(i)

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all)
            # One message in the handler and three queued: the fifth publish waits.
            await wait_until(lambda: len(published) == 4)
            with anyio.move_on_after(0.2):
                await wait_until(lambda: len(published) > 4)
            assert len(published) == 4
            release.set()
        await wait_until(lambda: len(handled) == 10)
    assert handled == list(range(10))


async def test_buses_with_one_name_share_a_broker_and_other_names_do_not() -> None:
    name = unique("shared")
    got: list[bytes] = []
    svc = bus.Service("s")

    @svc.subscribe("t")
    async def handle(body: bytes) -> None:
        got.append(body)

    async with (
        bus.Bus(f"memory://{name}", services=[svc]),
        bus.Bus(f"memory://{name}") as same,
        bus.Bus(f"memory://{unique('other')}") as other,
    ):
        await other.publish("t", b"elsewhere")
        await same.publish("t", b"here")
        await wait_until(lambda: got == [b"here"])


async def test_publish_after_close_raises() -> None:
    b = bus.Bus(f"memory://{unique('closed')}")
    async with b:
        pass
    with pytest.raises(bus.BusError):
        await b.publish("t", b"x")

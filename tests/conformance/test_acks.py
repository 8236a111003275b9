"""Contracts 2 and 8: at least once. A message is acked only after its handler returned;
a member that dies or is cancelled holding one loses nothing; closing is graceful."""

from __future__ import annotations

import anyio

import bus
from bus.transport import Capabilities
from tests.conformance.helpers import Item, wait_until


async def test_ack_only_after_handler_and_redelivery_after_cancel(
    bus_url: str, publisher: bus.Bus, topic: str, group: str, capabilities: Capabilities
) -> None:
    first_started = anyio.Event()
    attempts_seen: list[int] = []
    stuck = bus.Service(group)

    @stuck.subscribe(topic, concurrency=1)
    async def hang(item: Item, ctx: bus.Context) -> None:
        first_started.set()
        await anyio.sleep_forever()

    rescuer_got: list[tuple[int, int]] = []
    rescuer = bus.Service(group)

    @rescuer.subscribe(topic, concurrency=1)
    async def rescue(item: Item, ctx: bus.Context) -> None:
        rescuer_got.append((item.n, ctx.attempt))
        attempts_seen.append(ctx.attempt)

    holder = bus.Bus(bus_url, services=[stuck], close_timeout=0.2)
    await holder.start()
    try:
        await publisher.publish(topic, Item(1))
        with anyio.fail_after(20):
            await first_started.wait()
        async with bus.Bus(bus_url, services=[rescuer]):
            # Held, not acked: while its handler runs no other member may get it.
            with anyio.move_on_after(0.5):
                await wait_until(lambda: bool(rescuer_got))
            assert rescuer_got == []
            await holder.close()  # the handler is cancelled at the deadline, never acked
            await wait_until(lambda: len(rescuer_got) == 1)
    finally:
        await holder.close()
    assert rescuer_got[0][0] == 1
    if capabilities.counts_redeliveries:
        assert rescuer_got[0][1] == 2, "a redelivery after a lost consumer counts an attempt"


async def test_repeated_subscriber_close_and_reopen_loses_nothing(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    handled: set[int] = set()
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=4)
    async def handle(item: Item) -> None:
        handled.add(item.n)

    total = 0
    async with bus.Bus(bus_url, services=[svc]):
        pass  # binds the group before anything is published
    for round_ in range(5):
        async with bus.Bus(bus_url, services=[svc]):
            for i in range(40):
                await publisher.publish(topic, Item(total + i))
            total += 40
        # closed mid-stream or not: whatever it did not finish stays for the next one
        assert round_ >= 0
    for i in range(40):
        await publisher.publish(topic, Item(total + i))
    total += 40
    async with bus.Bus(bus_url, services=[svc]):
        await wait_until(lambda: len(handled) == total)
    assert handled == set(range(total))


async def test_graceful_close_finishes_in_flight_and_loses_nothing(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    started: list[int] = []
    finished: list[int] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=4)
    async def handle(item: Item) -> None:
        started.append(item.n)
        await anyio.sleep(0.02)
        finished.append(item.n)

    async with bus.Bus(bus_url, services=[svc]):
        pass
    for i in range(200):
        await publisher.publish(topic, Item(i))
    async with bus.Bus(bus_url, services=[svc], close_timeout=10):
        await wait_until(lambda: len(finished) >= 20)
    # Every handler that started before the close finished (none was cut off).
    assert sorted(started) == sorted(finished)
    async with bus.Bus(bus_url, services=[svc]):
        await wait_until(lambda: set(finished) == set(range(200)))

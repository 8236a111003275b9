"""Ephemeral groups (what `bus status` watches presence through): each one sees what is
published while it exists, and a survey finds running services on every adapter."""

from __future__ import annotations

import anyio

import bus
from bus import presence
from tests.conformance.helpers import unique


async def test_each_ephemeral_group_sees_what_is_published_while_it_exists(
    publisher: bus.Bus, topic: str
) -> None:
    transport = publisher.transport
    watchers = [
        await transport.consume(topic, "watch", prefetch=10, ephemeral=True) for _ in range(2)
    ]
    try:
        for i in range(3):
            await publisher.publish(topic, str(i).encode())
        for watcher in watchers:
            got = []
            with anyio.fail_after(20):
                while len(got) < 3:
                    delivery = await watcher.__anext__()
                    got.append(delivery.message.body)
                    await delivery.ack()
            assert sorted(got) == [b"0", b"1", b"2"]  # no key: no order across partitions
    finally:
        for watcher in watchers:
            await watcher.close()


async def test_a_survey_finds_a_running_service(bus_url: str, publisher: bus.Bus) -> None:
    name = unique("svc")
    svc = bus.Service(name)

    @svc.subscribe(unique("t"))
    async def handle(body: bytes) -> None: ...

    async with bus.Bus(bus_url, services=[svc], presence_interval=0.2):
        with anyio.fail_after(30):
            while True:
                found = await presence.survey(publisher.transport, 0.6)
                mine = [i for i in found if i.last.service == name]
                if mine:
                    break
    assert [i.status for i in mine] == ["live"]

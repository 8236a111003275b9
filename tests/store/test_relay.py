"""The relay: rows no broker can take go to the outbox's dead letters without blocking the
rest; several relays share one PostgreSQL outbox losing nothing and keeping order per
key; rows a stalled relay holds are taken over once its lease ends."""

from __future__ import annotations

import time

import anyio
import msgspec
import pytest

import bus
from bus.store import open_store
from tests.conformance.helpers import unique

from .helpers import Step, count, insert_raw, query


async def test_unsendable_rows_go_to_dead_letters_and_the_rest_flows(
    store_url: str, memory_url: str
) -> None:
    topic = unique("relay")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    def good(seq: int) -> bytes:
        return msgspec.json.encode(Step("k", seq))

    async with bus.Bus(memory_url, store=store_url):  # the tables
        pass
    # Written by hand, as an older bus or a script might: among good rows of one key, a
    # bad topic, a body over this bus's max_message_size, and unreadable headers.
    await insert_raw(store_url, topic, "k", "m1", b"{}", good(1))
    await insert_raw(store_url, "no spaces allowed", "k", "m2", b"{}", good(2))
    await insert_raw(store_url, topic, "k", "m3", b"{}", b"x" * (1024 * 1024 + 1))
    await insert_raw(store_url, topic, "k", "m4", b"not json", good(4))
    await insert_raw(store_url, topic, "k", "m5", b"{}", good(5))
    async with bus.Bus(memory_url, services=[consumer], store=store_url):
        with anyio.fail_after(10):
            while got != [1, 5] or await count(store_url, "bus_outbox"):
                await anyio.sleep(0.01)
    dead = await query(store_url, "SELECT message_id, reason FROM bus_outbox_dead ORDER BY id")
    assert [m for m, _ in dead] == ["m2", "m3", "m4"]
    assert "topic" in dead[0][1]
    assert "max_message_size" in dead[1][1]
    assert "headers" in dead[2][1]


@pytest.mark.parametrize("adapter", ["memory", "kafka"])  # both keep order per key
async def test_two_relays_lose_nothing_and_keep_order_per_key(
    adapter: str, pg_url: str, request: pytest.FixtureRequest
) -> None:
    """Two buses (two relays, two pools) on one outbox, both committing: every message
    arrives once, each key's in the order its transactions committed."""
    url: str = request.getfixturevalue(f"{adapter}_url")
    topic, keys, per_key = unique("relay"), 6, 40
    got: dict[str, list[int]] = {}
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.setdefault(step.key, []).append(step.seq)

    store = f"{pg_url}&batch=7"  # small rounds: the relays take turns many times
    async with (
        bus.Bus(url, services=[consumer]),
        bus.Bus(url, store=store) as one,
        bus.Bus(url, store=store) as two,
    ):

        async def produce(b: bus.Bus, key: str) -> None:
            for seq in range(per_key):
                async with b.transaction() as tx:
                    await tx.publish(topic, Step(key, seq), key=key)

        async with anyio.create_task_group() as tg:
            for k in range(keys):
                tg.start_soon(produce, one if k % 2 else two, f"k{k}")
        with anyio.fail_after(30):
            while sum(map(len, got.values())) < keys * per_key:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        sent = [one._relay.sent if one._relay else 0, two._relay.sent if two._relay else 0]
    assert {k: v for k, v in got.items()} == {f"k{k}": list(range(per_key)) for k in range(keys)}
    assert all(sent), f"both relays took part ({sent})"
    assert await count(pg_url, "bus_outbox") == 0


async def test_rows_held_by_a_stalled_relay_are_taken_over_after_its_lease(
    store_url: str, memory_url: str
) -> None:
    topic = unique("relay")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    async with bus.Bus(memory_url, store=store_url):  # the tables
        pass
    for seq in range(3):
        await insert_raw(
            store_url, topic, "k", f"m{seq}", b"{}", msgspec.json.encode(Step("k", seq))
        )
    stalled = open_store(store_url)
    await stalled.open()
    try:
        before_claim = time.monotonic()
        held = await stalled.claim("stalled-relay", 2, 1.5)  # then never sends them
        assert [r.message_id for r in held] == ["m0", "m1"]
        sep = "&" if "?" in store_url else "?"
        async with bus.Bus(
            memory_url, services=[consumer], store=f"{store_url}{sep}poll_interval=0.1"
        ):
            with anyio.fail_after(10):
                while not got:
                    await anyio.sleep(0.005)
                first = time.monotonic()
                while len(got) < 3:
                    await anyio.sleep(0.01)
            assert got == [0, 1, 2], "m2 waited behind the held rows of its key"
            assert first - before_claim >= 1.4, "nothing was taken before the lease ended"
            # The stalled relay wakes: its bookkeeping touches nothing it no longer holds.
            await stalled.finish("stalled-relay", [], [], [(r.id, "woke up") for r in held])
            with anyio.fail_after(10):  # the relay deletes what it sent just after the send
                while await count(store_url, "bus_outbox"):
                    await anyio.sleep(0.01)
    finally:
        await stalled.close()

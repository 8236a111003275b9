"""Contract 1 and 3: publish is confirmed, reaches every group bound before it, and the
members of one group share the messages while each group gets them all."""

from __future__ import annotations

import anyio
import msgspec
import pytest

import bus
import bus.transport
from tests.conformance.helpers import Item, Marker, unique, wait_until


async def test_round_trip_keeps_body_headers_id_and_correlation(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    seen: list[tuple[Item, bus.Context]] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic)
    async def handle(item: Item, ctx: bus.Context) -> None:
        seen.append((item, ctx))

    async with bus.Bus(bus_url, services=[svc]):
        message_id = await publisher.publish(
            topic,
            Item(7, "seven"),
            key="k-7",
            headers={"x-tenant": "acme", "x-note": "naïve ✓"},
            correlation_id="conv-1",
        )
        await wait_until(lambda: len(seen) == 1)
    item, ctx = seen[0]
    assert item == Item(7, "seven")
    assert ctx.message_id == message_id
    assert ctx.correlation_id == "conv-1"
    assert ctx.key == "k-7"
    assert ctx.headers["x-tenant"] == "acme"
    assert ctx.headers["x-note"] == "naïve ✓"
    assert ctx.message.body == msgspec.json.encode(Item(7, "seven"))
    assert ctx.attempt == 1
    assert ctx.topic == topic


async def test_topics_are_isolated(bus_url: str, publisher: bus.Bus) -> None:
    mine, other = unique("t"), unique("t")
    got: list[object] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(mine)
    async def handle(payload: bytes) -> None:
        got.append(payload)

    other_svc = bus.Service(unique("svc"))

    @other_svc.subscribe(other)
    async def handle_other(payload: bytes) -> None:
        pass

    async with bus.Bus(bus_url, services=[svc, other_svc]):
        for i in range(5):
            await publisher.publish(other, f"other-{i}".encode())
        await publisher.publish(mine, b"mine")
        await wait_until(lambda: b"mine" in got)
    assert got == [b"mine"]


async def test_many_topics_at_once(bus_url: str, publisher: bus.Bus) -> None:
    topics = [unique("t") for _ in range(12)]
    got: dict[str, set[int]] = {t: set() for t in topics}
    svc = bus.Service(unique("svc"))
    for t in topics:

        def make(name: str):  # type: ignore[no-untyped-def]
            async def handle(item: Item) -> None:
                got[name].add(item.n)

            return handle

        svc.subscribe(t)(make(t))

    async with bus.Bus(bus_url, services=[svc]):
        async with anyio.create_task_group() as tg:
            for t in topics:

                async def publish_all(name: str) -> None:
                    for i in range(10):
                        await publisher.publish(name, Item(i))

                tg.start_soon(publish_all, t)
        await wait_until(lambda: all(len(s) == 10 for s in got.values()))
    assert all(s == set(range(10)) for s in got.values())


async def test_fan_out_to_every_group(bus_url: str, publisher: bus.Bus, topic: str) -> None:
    groups = [unique("g") for _ in range(3)]
    got: dict[str, list[int]] = {g: [] for g in groups}
    services = []
    for g in groups:
        svc = bus.Service(g)

        def make(name: str):  # type: ignore[no-untyped-def]
            async def handle(item: Item) -> None:
                got[name].append(item.n)

            return handle

        svc.subscribe(topic)(make(g))
        services.append(svc)

    async with bus.Bus(bus_url, services=services):
        for i in range(30):
            await publisher.publish(topic, Item(i))
        await wait_until(lambda: all(len(v) >= 30 for v in got.values()))
    for g in groups:
        assert sorted(set(got[g])) == list(range(30))


async def test_competing_members_with_concurrent_publishers_lose_nothing(
    bus_url: str, publisher: bus.Bus, topic: str, group: str
) -> None:
    handled: dict[int, int] = {}
    per_member: list[int] = [0, 0, 0]

    def member(index: int) -> bus.Service:
        svc = bus.Service(group)

        @svc.subscribe(topic, concurrency=4)
        async def handle(item: Item) -> None:
            handled[item.n] = handled.get(item.n, 0) + 1
            per_member[index] += 1

        return svc

    async with (
        bus.Bus(bus_url, services=[member(0)]),
        bus.Bus(bus_url, services=[member(1)]),
        bus.Bus(bus_url, services=[member(2)]),
        bus.Bus(bus_url) as second_publisher,
    ):
        async with anyio.create_task_group() as tg:

            async def publish_range(b: bus.Bus, start: int) -> None:
                for i in range(start, start + 300):
                    await b.publish(topic, Item(i), key=str(i % 17))

            tg.start_soon(publish_range, publisher, 0)
            tg.start_soon(publish_range, second_publisher, 300)
        await wait_until(lambda: len(handled) == 600)
    assert set(handled) == set(range(600))
    assert sum(per_member) >= 600


async def test_publish_raises_when_the_broker_refuses(refusing_url: str, topic: str) -> None:
    release = anyio.Event()
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item) -> None:
        await release.wait()

    async with bus.Bus(refusing_url, services=[svc], close_timeout=0.5) as b:
        with pytest.raises(bus.PublishError):
            for i in range(50):
                await b.publish(topic, Item(i))
        release.set()


async def test_oversize_publish_fails_clearly_and_sends_nothing(bus_url: str, topic: str) -> None:
    got: list[bytes] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic)
    async def handle(payload: bytes) -> None:
        got.append(payload)

    async with bus.Bus(bus_url, services=[svc], max_message_size=1000) as b:
        with pytest.raises(bus.MessageTooLarge, match="max_message_size"):
            await b.publish(topic, b"x" * 1001)
        with pytest.raises(bus.MessageTooLarge):
            await b.request(topic, Item(1, "y" * 2000), response=Item, timeout=1)
        await b.publish(topic, b"small")
        await wait_until(lambda: got == [b"small"])
    async with bus.Bus(bus_url) as b:
        with pytest.raises(bus.MessageTooLarge):
            await b.publish(topic, b"x" * (1024 * 1024 + 1))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\xff\xfe raw", "héllo wörld ✓ 🚀 日本語".encode(), b"{not json"],
    ids=["empty", "binary", "utf8", "not-json"],
)
async def test_raw_bytes_payloads_arrive_byte_identical(
    bus_url: str, publisher: bus.Bus, topic: str, payload: bytes
) -> None:
    got: list[bytes] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic)
    async def handle(body: bytes) -> None:
        got.append(body)

    async with bus.Bus(bus_url, services=[svc]):
        await publisher.publish(topic, payload)
        await wait_until(lambda: len(got) == 1)
    assert got == [payload]


async def test_unicode_and_empty_struct_fields(
    bus_url: str, publisher: bus.Bus, topic: str
) -> None:
    got: list[Item] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic)
    async def handle(item: Item) -> None:
        got.append(item)

    sent = [Item(1, ""), Item(2, "Ünïcödé ✓ 🚀 \u2028 日本語"), Item(3, "\x00")]
    async with bus.Bus(bus_url, services=[svc]):
        for item in sent:
            await publisher.publish(topic, item)
        await wait_until(lambda: len(got) == 3)
    assert sorted(got, key=lambda i: i.n) == sent


async def test_msgpack_bus_and_json_bus_interoperate(bus_url: str, topic: str) -> None:
    got: list[Marker] = []
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic)
    async def handle(marker: Marker) -> None:
        got.append(marker)

    async with (
        bus.Bus(bus_url, services=[svc]),
        bus.Bus(bus_url, content_type="application/msgpack") as packer,
    ):
        await packer.publish(topic, Marker("packed"))
        await wait_until(lambda: len(got) == 1)
    assert got == [Marker("packed")]


async def test_publish_many_is_one_confirmed_batch(
    bus_url: str, publisher: bus.Bus, topic: str, capabilities: bus.transport.Capabilities
) -> None:
    seen: dict[str, list[int]] = {}
    svc = bus.Service(unique("svc"))

    @svc.subscribe(topic, concurrency=1)
    async def handle(item: Item, ctx: bus.Context) -> None:
        seen.setdefault(ctx.key or "", []).append(item.n)

    items = [Item(i, f"k{i % 4}") for i in range(200)]
    async with bus.Bus(bus_url, services=[svc]):
        with pytest.raises(bus.MessageTooLarge):
            await publisher.publish_many(topic, [Item(-1), b"x" * (2 * 1024 * 1024)])
        ids = await publisher.publish_many(topic, items, key=lambda item: item.text)
        assert len(set(ids)) == 200
        await wait_until(lambda: sum(len(v) for v in seen.values()) >= 200)
    assert sorted(n for v in seen.values() for n in v) == list(range(200))
    assert set(seen) == {"k0", "k1", "k2", "k3"}
    if capabilities.ordered_per_key:
        assert all(v == sorted(v) for v in seen.values())

"""The flow charts' arithmetic: rates from the running totals presence carries."""

from __future__ import annotations

import anyio
import pytest

import bus
from bus import presence
from bus.console.flow import Flow
from bus.presence import Count
from tests.conformance.helpers import unique


def rates(flow: Flow, now: float, kind: str = "handled") -> list[float]:
    (series,) = flow.snapshot(now)["series"]
    return list(series["rates"][kind])


def test_a_first_word_is_only_a_baseline() -> None:
    flow = Flow(step=1.0, window=10.0)
    flow.heard("a-1", [Count("t", "g", handled=500)], at=100.0)
    snap = flow.snapshot(100.5)
    assert snap["series"][0]["totals"]["handled"] == 500
    assert snap["series"][0]["rates"]["handled"] == []  # nothing known of when those came


def test_a_rise_is_spread_over_the_time_between_two_words() -> None:
    flow = Flow(step=1.0, window=10.0)
    flow.heard("a-1", [Count("t", "g", handled=10)], at=100.0)
    flow.heard("a-1", [Count("t", "g", handled=40, failed=2)], at=103.0)
    handled = rates(flow, 103.5)
    assert handled[-4:] == [10.0, 10.0, 10.0, 0.0]  # 30 over 100..103: 10/s in each second
    assert sum(handled) == 30
    assert sum(rates(flow, 103.5, "failed")) == pytest.approx(2, abs=0.01)  # rounded


def test_instances_add_up_and_a_restart_counts_from_zero() -> None:
    flow = Flow(step=2.0, window=20.0)
    for instance in ("a-1", "a-2"):
        flow.heard(instance, [Count("t", "g", handled=5)], at=10.0)
        flow.heard(instance, [Count("t", "g", handled=9)], at=12.0)
    flow.heard("a-2", [Count("t", "g", handled=3)], at=14.0)  # fewer: it restarted
    assert sum(rates(flow, 14.0)) * 2.0 == pytest.approx(4 + 4 + 3)
    assert flow.totals()[("t", "g")]["handled"] == 9 + 3
    flow.forget("a-1")
    assert flow.totals()[("t", "g")]["handled"] == 3


def test_old_buckets_fall_out_of_the_window() -> None:
    flow = Flow(step=1.0, window=5.0)
    flow.heard("a-1", [Count("t", "g")], at=0.0)
    flow.heard("a-1", [Count("t", "g", dead_lettered=1)], at=1.0)
    assert sum(rates(flow, 1.0, "dead_lettered")) == 1
    assert rates(flow, 60.0, "dead_lettered") == []
    with pytest.raises(ValueError, match="step must be positive"):
        Flow(step=0)


def test_parse_handler_reads_what_describe_handlers_writes() -> None:
    svc = bus.Service("svc")

    @svc.subscribe("a.b", group="g-1", concurrency=3)
    async def one(p: bytes) -> None: ...

    @svc.respond("c")
    async def two(p: bytes) -> bytes:
        return p

    lines = presence.describe_handlers(svc)
    assert [presence.parse_handler(line) for line in lines] == [
        ("subscribe", "a.b", "g-1"),
        ("respond", "c", "svc"),
    ]
    assert presence.parse_handler("something else") is None


async def test_presence_carries_a_services_running_totals(memory_url: str) -> None:
    svc = bus.Service(unique("counted"))
    topic = unique("t")

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.001))
    async def flaky(p: bytes) -> None:
        if p == b"bad":
            raise ValueError("bad")

    heard: list[presence.Announcement] = []
    async with bus.Bus(memory_url) as watcher:
        consumer = await watcher.transport.consume(
            presence.TOPIC, "probe", prefetch=10, ephemeral=True
        )
        async with bus.Bus(memory_url, services=[svc], presence_interval=0.05) as b:
            await b.publish(topic, b"ok")
            await b.publish(topic, b"bad")
            with anyio.fail_after(10):
                async for delivery in consumer:
                    await delivery.ack()
                    a = presence.msgspec.json.decode(
                        delivery.message.body, type=presence.Announcement
                    )
                    heard.append(a)
                    if a.counts and a.counts[0].dead_lettered == 1 and a.counts[0].handled == 1:
                        break
        await consumer.close()
    assert heard[-1].counts == [
        Count(topic, svc.name, handled=1, failed=2, retried=1, dead_lettered=1)
    ]

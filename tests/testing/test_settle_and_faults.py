"""settle() runs cascades to the end and says what is stuck when it cannot; faults make
handlers, publishes, requests and consumers fail on purpose."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import msgspec
import pytest

import bus
from bus.testing import NotSettled, TestBus
from tests.testing.shop_like import Placed, Reserved, Shipped, cascade


class Ask(msgspec.Struct):
    n: int


async def test_a_cascade_of_three_services_settles() -> None:
    async with TestBus(services=cascade("c3")) as t:
        await t.publish("c3.placed", Placed("o-1", 2), key="o-1")
        await t.publish("c3.placed", Placed("o-2", 1), key="o-2")
        await t.settle()
        assert t.published("c3.reserved", Reserved) == [Reserved("o-1"), Reserved("o-2")]
        assert t.published("c3.shipped", Shipped) == [Shipped("o-1", 1), Shipped("o-2", 1)]
        assert t.handled("c3.shipped", Shipped, group="c3-audit") == [
            Shipped("o-1", 1),
            Shipped("o-2", 1),
        ]
        assert t.published("c3.shipped", where=lambda s: s.order_id == "o-2") == [Shipped("o-2", 1)]
        assert [c.topic for c in t.calls()] == ["c3.placed", "c3.placed"] + ["c3.reserved"] * 2 + [
            "c3.shipped"
        ] * 2
        assert all(s.by is not None for s in t.recorder.sent[2:])  # handlers published them


async def test_faults_in_the_middle_of_a_cascade_are_retried_and_rejects_dead_lettered() -> None:
    async with TestBus(services=cascade("cf", retry=bus.Retry(attempts=3, backoff=30))) as t:
        t.fail("cf.reserved", times=2)  # shipping fails twice, succeeds on the third call
        await t.publish("cf.placed", Placed("o-1", 1))
        await t.publish("cf.placed", Placed("o-bad", 0))  # rejected: no retry
        await t.settle()
        assert t.published("cf.shipped", Shipped) == [Shipped("o-1", 3)]
        assert [(c.attempt, c.outcome) for c in t.calls("cf.reserved")] == [
            (1, "raised"),
            (2, "raised"),
            (3, "returned"),
        ]
        assert t.now >= 30 + 30  # two backoffs (max_backoff 30) passed on the virtual clock
        letters = [d async for d in t.dead_letters("cf.placed", group="cf-inventory")]
        assert [(d.reason, d.exception_message) for d in letters] == [
            ("rejected", "quantity 0 is not positive")
        ]


async def test_a_handler_that_keeps_failing_ends_in_the_dead_letters() -> None:
    async with TestBus(services=cascade("cd", retry=bus.Retry(attempts=4, backoff=60))) as t:
        t.fail("cd.placed", times=4, error=ConnectionError)
        await t.publish("cd.placed", Placed("o-1", 1))
        await t.settle()
        assert t.published("cd.reserved") == []
        [letter] = [d async for d in t.dead_letters("cd.placed", group="cd-inventory")]
        assert (letter.reason, letter.attempts) == ("failed", 4)
        assert letter.exception_type == "builtins.ConnectionError"
        assert "fault armed by TestBus.fail('cd.placed')" in (letter.exception_message or "")


async def test_a_failed_publish_raises_publish_error_and_the_handler_is_retried() -> None:
    async with TestBus(services=cascade("cp", retry=bus.Retry(attempts=3, backoff=1))) as t:
        t.fail_publish("cp.reserved")  # inventory's first publish fails
        await t.publish("cp.placed", Placed("o-1", 1))
        await t.settle()
        [first, second] = t.calls("cp.placed")
        assert isinstance(first.error, bus.PublishError)
        assert "TestBus.fail_publish('cp.reserved')" in str(first.error)
        assert second.outcome == "returned"
        assert t.published("cp.reserved", Reserved) == [Reserved("o-1")]  # only the one sent
        t.fail_publish("cp.placed")
        with pytest.raises(bus.PublishError):
            await t.publish("cp.placed", Placed("o-2", 1))


async def test_a_request_made_to_time_out_times_out_on_the_virtual_clock() -> None:
    svc = bus.Service("asker")
    answers = bus.Service("answers")

    @answers.respond("double")
    async def double(req: Ask) -> Ask:
        return Ask(req.n * 2)

    @svc.subscribe("ask", retry=bus.Retry(attempts=2, backoff=5, jitter=0))
    async def ask(req: Ask, ctx: bus.Context) -> None:
        reply = await ctx.request("double", req, response=Ask, timeout=20)
        await ctx.publish("answered", reply)

    async with TestBus(services=[svc, answers]) as t:
        t.time_out_requests("double")
        await t.publish("ask", Ask(21))
        await t.settle()
        [first, second] = t.calls("ask")
        assert isinstance(first.error, bus.RequestTimeout)
        assert second.started == pytest.approx(20 + 5)  # the timeout, then the backoff
        assert t.published("answered", Ask) == [Ask(42)]


async def test_a_consumer_dropped_mid_handler_gets_the_message_again() -> None:
    svc = bus.Service("counter")
    runs: list[int] = []

    @svc.subscribe("count")
    async def count(req: Ask, ctx: bus.Context) -> None:
        runs.append(ctx.attempt)
        await anyio.lowlevel.checkpoint()

    async with TestBus(services=[svc]) as t:
        t.drop_consumer("count")
        await t.publish("count", Ask(1))
        await t.settle()
        assert sorted(runs) == [1, 2]  # ran twice: the handler must be idempotent
        assert [c.outcome for c in t.calls("count")] == ["dropped", "returned"]


async def test_settle_names_what_is_still_pending() -> None:
    svc = bus.Service("stuck")
    never = anyio.Event()

    @svc.subscribe("wait.forever")
    async def wait_forever(req: Ask) -> None:
        await never.wait()

    async with TestBus(services=[svc], settle_timeout=0.3) as t:
        await t.publish("wait.forever", Ask(7))
        with pytest.raises(NotSettled) as caught:
            await t.settle()
        text = str(caught.value)
        assert "TestBus.settle() did not finish within 0.3s of real time" in text
        assert "handler still running" in text
        assert "wait_forever on 'wait.forever' (group 'stuck'), attempt 1, Ask(n=7)" in text
        never.set()
        await t.settle()


async def test_settle_stops_an_endless_cascade() -> None:
    svc = bus.Service("pingpong")

    @svc.subscribe("ping")
    async def ping(req: Ask, ctx: bus.Context) -> None:
        await ctx.publish("pong", Ask(req.n + 1))

    @svc.subscribe("pong")
    async def pong(req: Ask, ctx: bus.Context) -> None:
        await ctx.publish("ping", Ask(req.n + 1))

    async with TestBus(services=[svc]) as t:
        t.max_calls = 200
        await t.publish("ping", Ask(0))
        with pytest.raises(NotSettled, match="after 200 handler calls: do handlers publish in a"):
            await t.settle()


async def test_a_fault_that_never_fired_is_reported() -> None:
    with pytest.warns(UserWarning, match=r"never fired: fail\('nowhere'\): 2 left"):
        async with TestBus() as t:
            t.fail("nowhere", times=2)


async def test_drop_consumer_on_a_real_broker_says_it_needs_the_embedded_one(
    rabbitmq_url: str,
) -> None:
    t = TestBus(url=rabbitmq_url)
    assert not t.virtual
    with pytest.raises(bus.ConfigError, match="drop_consumer needs the embedded broker"):
        t.drop_consumer("x")

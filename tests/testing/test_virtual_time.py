"""Virtual time: retries, backoff and request timeouts run on the test's clock, never
early, in no wall time."""

from __future__ import annotations

import time

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bus
from bus.testing import TestBus
from bus.testing.clock import VirtualClock


class Job(msgspec.Struct):
    n: int


def flaky(retry: bus.Retry, failures: int) -> tuple[bus.Service, list[tuple[int, float]]]:
    """A handler failing its first ``failures`` calls; it logs (attempt, clock time)."""
    svc = bus.Service("flaky")
    log: list[tuple[int, float]] = []
    clock: list[TestBus] = []

    @svc.subscribe("jobs", retry=retry)
    async def work(job: Job, ctx: bus.Context) -> None:
        log.append((ctx.attempt, clock[0].now))
        if ctx.attempt <= failures:
            raise RuntimeError(f"failure {ctx.attempt}")

    svc.clock_holder = clock  # type: ignore[attr-defined]
    return svc, log


async def run_flaky(retry: bus.Retry, failures: int) -> tuple[TestBus, list[tuple[int, float]]]:
    svc, log = flaky(retry, failures)
    async with TestBus(services=[svc]) as t:
        svc.clock_holder.append(t)  # type: ignore[attr-defined]
        await t.publish("jobs", Job(1))
        await t.settle()
    return t, log


@settings(max_examples=40)
@given(
    attempts=st.integers(2, 6),
    backoff=st.floats(0.0, 120.0),
    max_backoff=st.floats(0.0, 300.0),
    jitter=st.none() | st.floats(0.0, 30.0),
)
def test_a_retry_never_comes_before_its_backoff(
    attempts: int, backoff: float, max_backoff: float, jitter: float | None
) -> None:
    retry = bus.Retry(attempts=attempts, backoff=backoff, max_backoff=max_backoff, jitter=jitter)
    _, log = anyio.run(run_flaky, retry, attempts)  # fails every call: all retries run
    assert [a for a, _ in log] == list(range(1, attempts + 1))
    for k in range(1, attempts):
        failed_at, retried_at = log[k - 1][1], log[k][1]
        # compared as the broker computes the due time: no float subtraction
        assert retried_at >= failed_at + retry.floor(k), (k, failed_at, retried_at)
        ceiling = retry.floor(k) + (backoff / 4 if jitter is None else jitter)
        assert retried_at <= failed_at + ceiling + 1e-6  # and no later than it had to


async def test_retry_of_five_attempts_with_a_minute_of_backoff_takes_milliseconds() -> None:
    retry = bus.Retry(attempts=5, backoff=60, max_backoff=3600, jitter=0)
    started = time.perf_counter()
    t, log = await run_flaky(retry, failures=4)
    wall = time.perf_counter() - started
    assert [a for a, _ in log] == [1, 2, 3, 4, 5]
    assert [when for _, when in log] == [0, 60, 180, 420, 900]  # 60, 120, 240, 480 s apart
    assert t.now == 900
    assert wall < t.now / 100, f"{wall:.3f}s of wall time"  # 9 s: a machine busy or not
    assert t.handled("jobs", Job) == [Job(1)]


async def test_advance_delivers_what_falls_due_and_nothing_sooner() -> None:
    retry = bus.Retry(attempts=3, backoff=10, jitter=0)
    svc, log = flaky(retry, failures=2)
    async with TestBus(services=[svc]) as t:
        svc.clock_holder.append(t)  # type: ignore[attr-defined]
        await t.publish("jobs", Job(1))
        await t.advance(9.999)
        assert [a for a, _ in log] == [1]  # the first retry is due at t=10
        await t.advance(0.001)
        assert [a for a, _ in log] == [1, 2]
        await t.advance(100)  # the second (due at t=30) falls due within
        assert log == [(1, 0), (2, 10), (3, 30)]
        assert t.now == pytest.approx(110)


async def test_a_request_nobody_answers_times_out_on_the_virtual_clock() -> None:
    async with TestBus() as t:
        started = time.perf_counter()
        with pytest.raises(bus.RequestTimeout, match=r"no reply on .nobody\.home. within 30"):
            await t.request("nobody.home", Job(1), response=Job, timeout=30)
        assert t.now == pytest.approx(30)
        assert time.perf_counter() - started < 0.5


async def test_a_request_answered_in_time_returns_without_moving_the_clock() -> None:
    svc = bus.Service("echo")

    @svc.respond("echo")
    async def echo(job: Job) -> Job:
        return Job(job.n + 1)

    async with TestBus(services=[svc]) as t:
        assert await t.request("echo", Job(1), response=Job, timeout=30) == Job(2)
        assert t.now == 0


async def test_the_virtual_clock_refuses_a_real_broker(rabbitmq_url: str) -> None:
    with pytest.raises(bus.ConfigError, match="virtual clock needs memory://"):
        bus.Bus(rabbitmq_url, clock=VirtualClock())


async def test_the_virtual_clock_sleeps_and_times_out_only_when_moved() -> None:
    clock = VirtualClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5)
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.sleep(0.01)
        assert woke == [] and clock.next_deadline() == 5
        clock.advance_to(4.9)
        await anyio.sleep(0.01)
        assert woke == []
        clock.advance_to(5)
    assert woke == [5]
    with clock.move_on_after(1) as scope:
        clock.advance_to(6)
        await anyio.sleep(1)  # real time: cancelled by the virtual timer at once
    assert scope.cancelled_caught
    with pytest.raises(TimeoutError):
        async with clock.timeout(1):
            clock.advance_to(7)
            await anyio.sleep(1)

"""Presence on the embedded broker: instances announce, stop, and go silent."""

from __future__ import annotations

import anyio
import pytest

import bus
from bus import presence
from tests.conformance.helpers import unique


def service() -> bus.Service:
    svc = bus.Service("payments")

    @svc.subscribe("payment.requested", concurrency=4)
    async def charge(body: bytes) -> None: ...

    return svc


async def test_survey_lists_live_instances_and_a_graceful_stop() -> None:
    url = f"memory://{unique('presence')}"
    async with (
        bus.Bus(url, presence_interval=None) as watcher,
        bus.Bus(url, services=[service()], presence_interval=0.1),
    ):
        leaving = bus.Bus(url, services=[service()], presence_interval=0.1)
        await leaving.start()
        instances = await presence.survey(watcher.transport, 0.35)
        assert [i.status for i in instances] == ["live", "live"]
        assert instances[0].last.handlers == [
            "subscribe payment.requested (group payments, concurrency 4)"
        ]
        async with anyio.create_task_group() as tg:

            async def survey_later() -> None:
                found.extend(await presence.survey(watcher.transport, 0.35))

            found: list[presence.Instance] = []
            tg.start_soon(survey_later)
            await anyio.sleep(0.05)
            await leaving.close()
        assert sorted(i.status for i in found) == ["live", "stopped"]


async def test_a_survey_leaves_no_group_behind() -> None:
    url = f"memory://{unique('presence')}"
    async with bus.Bus(url, presence_interval=None) as watcher:
        await presence.survey(watcher.transport, 0.05)
        await presence.survey(watcher.transport, 0.05)
        broker = watcher.transport._broker  # type: ignore[attr-defined]
        assert broker.topics.get(presence.TOPIC, {}) == {}


def test_silent_when_the_last_word_is_older_than_two_intervals() -> None:
    a = presence.Announcement("s", "s-1", "h", 1, [], "t", "t", interval=0.1)
    assert presence.Instance(a, silent_for=0.3).status == "silent"


@pytest.mark.parametrize("interval", [-5, float("nan"), float("inf"), "5"])
def test_a_bad_presence_interval_given_to_bus_is_a_config_error(interval: object) -> None:
    with pytest.raises(bus.ConfigError, match="presence_interval"):
        bus.Bus("memory://", presence_interval=interval)  # type: ignore[arg-type]


def test_a_presence_interval_of_zero_turns_presence_off() -> None:
    assert bus.Bus("memory://", presence_interval=0).presence_interval is None

"""deadlines.py: what bounds an idempotent producer's confirmation (tansu refuses the
idempotent producer, so the broker tests reach it only through a plain one)."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from aiokafka.errors import KafkaTimeoutError

from adapters.kafka.deadlines import Deadlines


async def test_an_unresolved_future_fails_at_its_deadline_and_resolved_ones_are_left() -> None:
    deadlines = Deadlines(0.2)
    loop = asyncio.get_running_loop()
    try:
        answered: asyncio.Future[object] = loop.create_future()
        silent: asyncio.Future[object] = loop.create_future()
        deadlines.watch(answered)
        deadlines.watch(silent)
        answered.set_result("ok")
        started = loop.time()
        with anyio.fail_after(5), pytest.raises(KafkaTimeoutError, match=r"0\.2 s"):
            await silent
        assert 0.15 <= loop.time() - started < 2
        assert answered.result() == "ok"
        # Watched later, after an idle spell: its deadline counts from its own watch.
        late: asyncio.Future[object] = loop.create_future()
        await asyncio.sleep(0.3)
        deadlines.watch(late)
        watched_at = loop.time()
        with anyio.fail_after(5), pytest.raises(KafkaTimeoutError):
            await late
        assert loop.time() - watched_at >= 0.15
    finally:
        await deadlines.close()


async def test_many_confirmed_sends_leave_nothing_behind() -> None:
    deadlines = Deadlines(30)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(1000):
            future: asyncio.Future[object] = loop.create_future()
            deadlines.watch(future)
            future.set_result(None)
        last: asyncio.Future[object] = loop.create_future()
        deadlines.watch(last)
        assert len(deadlines._watched) == 1  # the resolved ones were swept on the way
    finally:
        await deadlines.close()

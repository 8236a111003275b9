"""deadlines.py: what bounds an idempotent producer's confirmation (tansu refuses the
idempotent producer, so the broker tests reach it only through a plain one)."""

from __future__ import annotations

import asyncio
import functools

import anyio
import pytest
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError

from adapters.kafka.batches import _relay
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


async def test_a_batch_failed_by_the_client_as_its_deadline_passes_raises_nothing_more() -> None:
    """send_batch hands back a shield. Had the deadline failed the shield itself, a batch
    the client failed in the same loop turn would make the shield raise InvalidStateError
    in the loop (seen when publish_timeout_ms and the client's request timeout, equal,
    ran out together): batches.py watches a future of its own and relays onto it."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        inner: asyncio.Future[object] = loop.create_future()
        sent = asyncio.shield(inner)
        confirmed: asyncio.Future[None] = loop.create_future()
        sent.add_done_callback(functools.partial(_relay, confirmed))
        inner.set_exception(RequestTimedOutError())  # the client gives the batch up...
        confirmed.set_exception(KafkaTimeoutError())  # ...as the deadline fails it
        for _ in range(3):
            await asyncio.sleep(0)
        with pytest.raises(KafkaTimeoutError):
            confirmed.result()  # the deadline's word stands
        assert sent.done() and isinstance(sent.exception(), RequestTimedOutError)
        assert errors == []
    finally:
        loop.set_exception_handler(None)

"""Deploys on a quorum queue count no attempt (issue 11, item 3), seen from a handler.

A quorum queue counts every return of a message (``x-delivery-count``); a deploy that
handed back what its member had prefetched that way would raise the count of each of
them, and ``Retry(attempts=2)`` would then dead-letter such a message on its first real
failure. Here a member with a deep prefetch is deployed again and again mid-stream, and
every message fails once for real: each must be called first with ``ctx.attempt`` 1,
retried once, and never dead-lettered.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest

import bus
from adapters.rabbitmq.consumer import RabbitDelivery
from tests.conformance.helpers import unique, wait_until

TOTAL = 150
DEPLOYS = 3


class Job(msgspec.Struct):
    n: int


# Found by this test on RabbitMQ 3.10.8, two ways a deploy counted an attempt (both fixed
# in adapters/rabbitmq/consumer.py; before, about half the runs failed):
# - a message the queue sent while the channel was reading basic.cancel (a prefetch slot
#   freed by an ack, refilled) never reached the client: the channel, which forgets the
#   consumer on basic.cancel, returned it to the queue counted (rabbitmq-server#3729);
# - a prefetch's worth of acks of returned originals sent just before the channel closed:
#   past 32 unapplied commands the channel keeps later acks back, the close drops them, and
#   the queue returns those originals counted (seen as attempts [2, 1]: original, then copy).
@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_deploys_count_no_attempt_and_a_first_real_failure_is_retried(
    rabbitmq_url: str, queue_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{rabbitmq_url}&queue_type={queue_type}&prefetch=40"
    topic, group = unique("quorum-deploys"), unique("g")
    returned: list[str] = []
    put_back = RabbitDelivery.put_back

    async def counted_put_back(self: RabbitDelivery) -> None:
        returned.append(self.message.id)
        await put_back(self)

    monkeypatch.setattr(RabbitDelivery, "put_back", counted_put_back)
    calls: dict[int, list[int]] = {}
    svc = bus.Service(group)

    @svc.subscribe(topic, concurrency=2, retry=bus.Retry(attempts=2, backoff=0.05))
    async def handle(job: Job, ctx: bus.Context) -> None:
        await anyio.sleep(0.01)
        first = job.n not in calls
        calls.setdefault(job.n, []).append(ctx.attempt)
        if first:
            raise RuntimeError(f"the first real failure of {job.n}")

    async with bus.Bus(url, services=[svc]):
        pass  # the group's queue exists before anything is published
    async with bus.Bus(url) as publisher:
        await publisher.publish_many(topic, [Job(n) for n in range(TOTAL)])
        closed_mid_stream = 0
        for _ in range(DEPLOYS):
            async with bus.Bus(url, services=[svc], close_timeout=20):
                seen = len(calls)
                await wait_until(lambda: len(calls) > seen + 5)  # noqa: B023
            closed_mid_stream += len(calls) < TOTAL
        async with bus.Bus(url, services=[svc]):
            with anyio.move_on_after(60):  # every message called twice, or parked
                while len(calls) < TOTAL or not all(
                    len(attempts) >= 2 or attempts[0] != 1 for attempts in calls.values()
                ):
                    await anyio.sleep(0.02)
        letters = [d async for d in publisher.dead_letters(topic, group=group)]
    assert closed_mid_stream == DEPLOYS, "a deploy did not land mid-stream: it proved little"
    assert returned, "no deploy returned a prefetched message: the test proved nothing"
    assert len(calls) == TOTAL, f"{TOTAL - len(calls)} never handled"
    counted = {n: attempts for n, attempts in calls.items() if attempts[0] != 1}
    assert not counted, f"deploys counted attempts: {counted}"
    assert letters == [], f"dead-lettered on their first real failure: {len(letters)}"
    assert all(attempts[:2] == [1, 2] for attempts in calls.values())

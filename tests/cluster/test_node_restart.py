"""A RabbitMQ node of our own restarted twice during a stream of 10,000 messages: once
gracefully, once by kill -9 and a start. Two publishers and a consumer group of two
run throughout, on durable classic queues. Every message whose ``publish`` returned is
delivered (lost = 0; duplicates counted and reported); a publish during the outage waits
and returns, or raises PublishError and is not counted as published. Retries waiting in
a delay queue and dead letters parked before the restarts are still there after them."""

from __future__ import annotations

import logging
import time
from functools import partial

import anyio
import pytest

import bus
from brokers.rabbitmq_node import RabbitNode
from tests.cluster.stream import Ledger, Numbered, publish_paced, queue_depths, wait_for
from tests.conformance.helpers import letters_of, unique

TOTAL = 10_000
RATE = 250  # each of two publishers: the stream outlasts both restarts
PARKED = 5
RETRY_DELAY = 25.0  # seconds a parked retry waits in its delay queue: past the first restart

pytestmark = pytest.mark.slow


async def test_a_node_restarted_twice_mid_stream_loses_nothing(
    rabbit_node: RabbitNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bus.rabbitmq")
    tag = unique("restart")
    url = rabbit_node.url(exchange=tag)
    group = f"{tag}-g"
    stream_topic, retry_topic, dead_topic = f"{tag}.stream", f"{tag}.retry", f"{tag}.dead"
    ledger = Ledger(TOTAL)
    failed_once: set[int] = set()
    retried: dict[int, tuple[int, float]] = {}

    service = bus.Service(group)

    @service.subscribe(stream_topic, concurrency=32)
    async def on_stream(item: Numbered) -> None:
        ledger.deliver(item.n)

    @service.subscribe(
        retry_topic, retry=bus.Retry(attempts=2, backoff=RETRY_DELAY, max_backoff=RETRY_DELAY)
    )
    async def on_retry(item: Numbered, ctx: bus.Context) -> None:
        if ctx.attempt == 1:
            failed_once.add(item.n)
            raise RuntimeError("not yet: try again after the restarts")
        retried[item.n] = (ctx.attempt, time.monotonic())

    @service.subscribe(dead_topic)
    async def on_dead(item: Numbered) -> None:
        raise bus.Reject("parked before the restarts")

    async with (
        bus.Bus(url, services=[service]),
        bus.Bus(url, services=[service]),  # a consumer group of two members
        bus.Bus(url) as first,
        bus.Bus(url) as second,
    ):
        # Before the restarts: retries waiting in a delay queue, dead letters parked.
        for n in range(PARKED):
            await first.publish(retry_topic, Numbered(n))
            await first.publish(dead_topic, Numbered(n))
        await wait_for(lambda: len(failed_once) == PARKED, 30, "first attempts failed")
        parked = await letters_of(first, dead_topic, group, PARKED)
        delay_prefix = f"{tag}:{group}:{retry_topic}:delay:"

        async def delayed() -> int:
            depths = await anyio.to_thread.run_sync(queue_depths, rabbit_node, delay_prefix)
            return sum(depths.values())

        with anyio.fail_after(30):
            while await delayed() < PARKED:
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tg:
            for offset, publisher in enumerate((first, second)):
                numbers = range(offset, TOTAL, 2)
                paced = partial(publish_paced, publisher, per_second=RATE)
                tg.start_soon(paced, stream_topic, numbers, ledger)
            await wait_for(lambda: len(ledger.published) >= TOTAL // 4, 60, "a quarter out")
            outage = ledger.went("graceful restart (SIGTERM, start)")
            await anyio.to_thread.run_sync(rabbit_node.restart)
            outage.back_at = time.monotonic()
            await wait_for(lambda: outage.delivered_at and outage.published_at, 60, "resumed")

            await wait_for(lambda: len(ledger.published) >= TOTAL * 6 // 10, 60, "60% out")
            crash = ledger.went("kill -9, start")
            published_at_crash = len(ledger.published)
            await anyio.to_thread.run_sync(rabbit_node.kill)
            await anyio.to_thread.run_sync(rabbit_node.start)
            crash.back_at = time.monotonic()
        await wait_for(ledger.all_delivered, 60, "every published message delivered")

        # The retries came back once, after the restarts began; the dead letters stayed.
        await wait_for(lambda: len(retried) == PARKED, 60, "the parked retries delivered")
        assert {n: attempt for n, (attempt, _) in retried.items()} == dict.fromkeys(
            range(PARKED), 2
        )
        # In their delay queue when the node went down; out of it only after.
        assert min(at for _, at in retried.values()) > outage.back_at
        after = await letters_of(first, dead_topic, group, PARKED)
        assert sorted(d.message_id for d in after) == sorted(d.message_id for d in parked)
        assert sorted(d.body for d in after) == sorted(d.body for d in parked)
        assert {d.headers["bus-dlq-reason"] for d in after} == {"rejected"}

    print("\n" + ledger.report("node restarted twice"))
    assert published_at_crash < TOTAL, "the kill came mid-stream"
    assert len(ledger.published) + len(ledger.failed) == TOTAL
    assert not set(ledger.failed) & ledger.published
    lost = ledger.lost()
    assert not lost, f"lost {len(lost)} published messages, e.g. {lost[:10]}"
    assert "reconnected to" in caplog.text

"""A three-node RabbitMQ cluster with quorum queues, the bus's URL naming all three: the
node every connection is on is killed (kill -9) during a stream of 10,000 messages. The
bus reconnects to the next node, consumers resume, request-reply resumes, retries and
dead-lettering still work (those parked before the kill included), and nothing published
is lost. Then the node is started again and rejoins; the bus notices nothing but a line."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from functools import partial

import anyio
import pytest

import bus
from brokers.rabbitmq_cluster import RabbitCluster
from brokers.rabbitmq_node import url_of
from tests.cluster.stream import Ledger, Numbered, back_or_held, publish_paced, wait_for
from tests.conformance.helpers import letters_of, unique

TOTAL = 10_000
RATE = 250  # each of two publishers
PARKED = 5
# Parked before the kill, due well after it, once their delay queue has a new leader.
# RabbitMQ 3.10.8 then sometimes leaves them ready in the queue past their time (README,
# "Running on a cluster"): back_or_held tells which happened.
SLOW_RETRY = 30.0
FAST_RETRY = 0.3

pytestmark = pytest.mark.slow


def connected_to(text: str) -> set[str]:
    return set(re.findall(r"connected to RabbitMQ at (\S+) ", text))


def reconnected_to(text: str) -> list[str]:
    return re.findall(r"reconnected to \S+ at (\S+)", text)


async def test_killing_the_node_the_bus_is_on_loses_nothing(
    rabbit_cluster: RabbitCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bus.rabbitmq")
    tag = unique("failover")
    url = rabbit_cluster.url(exchange=tag, queue_type="quorum")
    first_node, next_node = rabbit_cluster.nodes[0], rabbit_cluster.nodes[1]
    group = f"{tag}-g"
    topics = {k: f"{tag}.{k}" for k in ("stream", "slow", "fast", "dead", "rpc")}
    ledger = Ledger(TOTAL)
    after = Ledger(100)  # published once the killed node is back
    attempts: dict[str, dict[int, list[int]]] = {"slow": {}, "fast": {}}

    service = bus.Service(group)

    @service.subscribe(topics["stream"], concurrency=32)
    async def on_stream(item: Numbered) -> None:
        (ledger if item.n < TOTAL else after).deliver(item.n)

    def retried(kind: str, delay: float) -> None:
        @service.subscribe(topics[kind], retry=bus.Retry(attempts=2, backoff=delay))
        async def on_retry(item: Numbered, ctx: bus.Context) -> None:
            attempts[kind].setdefault(item.n, []).append(ctx.attempt)
            if ctx.attempt == 1:
                raise RuntimeError("fails once")

    retried("slow", SLOW_RETRY)
    retried("fast", FAST_RETRY)

    @service.subscribe(topics["dead"])
    async def on_dead(item: Numbered) -> None:
        raise bus.Reject("to the dead letters")

    @service.respond(topics["rpc"])
    async def double(item: Numbered) -> Numbered:
        return Numbered(item.n * 2)

    def all_retried(kind: str, count: int) -> bool:
        """``count`` messages handled again after failing once: at attempt 2, or later when
        a failover returned the retry unhandled (RabbitMQ counts that as a delivery)."""
        return len([a for a in attempts[kind].values() if max(a) >= 2]) == count

    async with (
        bus.Bus(url, services=[service]),
        bus.Bus(url, services=[service]),
        bus.Bus(url) as first,
        bus.Bus(url) as second,
    ):
        assert connected_to(caplog.text) == {first_node.address}, "all start on the first"
        assert (await first.request(topics["rpc"], Numbered(21), response=Numbered)).n == 42
        for n in range(PARKED):
            await first.publish(topics["slow"], Numbered(n))
            await first.publish(topics["dead"], Numbered(n))
        await wait_for(lambda: len(attempts["slow"]) == PARKED, 30, "slow retries waiting")
        parked = await letters_of(first, topics["dead"], group, PARKED)

        async with anyio.create_task_group() as tg:
            for offset, publisher in enumerate((first, second)):
                numbers = range(offset, TOTAL, 2)
                paced = partial(publish_paced, publisher, per_second=RATE)
                tg.start_soon(paced, topics["stream"], numbers, ledger)
            await wait_for(lambda: len(ledger.published) >= TOTAL // 3, 60, "a third out")
            killed = ledger.went(f"kill -9 of {first_node.nodename}, the bus's node")
            published_at_kill = len(ledger.published)
            await anyio.to_thread.run_sync(first_node.kill)
            killed.back_at = time.monotonic()  # the cluster is still there: 2 of 3
            await wait_for(lambda: killed.delivered_at and killed.published_at, 60, "resumed")

            # Request-reply resumes: a request in flight at the kill may time out, one
            # sent while its queue elects a new leader may be refused (PublishError).
            failures: list[str] = []
            with anyio.fail_after(60):
                while True:
                    try:
                        reply = await first.request(
                            topics["rpc"], Numbered(5), response=Numbered, timeout=2.0
                        )
                        break
                    except (bus.RequestTimeout, bus.PublishError) as exc:
                        failures.append(type(exc).__name__)
            request_back = time.monotonic() - killed.down_at
            assert reply.n == 10
            for n in range(20):
                assert (await second.request(topics["rpc"], Numbered(n), response=Numbered)).n == (
                    2 * n
                )

            # Retries and dead-lettering work on the survivors.
            for n in range(PARKED):
                await second.publish(topics["fast"], Numbered(n))
                await second.publish(topics["dead"], Numbered(100 + n))
            await wait_for(lambda: all_retried("fast", PARKED), 60, "fast retries after kill")
        await wait_for(ledger.all_delivered, 90, "every published message delivered")

        # Retries parked before the kill come back, or RabbitMQ 3.10.8 holds them past
        # their time (README, "Running on a cluster"): never lost.
        slow_back = await back_or_held(
            rabbit_cluster,
            lambda: all_retried("slow", PARKED),
            lambda: PARKED - len([a for a in attempts["slow"].values() if max(a) >= 2]),
            f"{tag}:{group}:{topics['slow']}:delay:",
            "slow retries parked before the kill",
        )
        letters = await letters_of(first, topics["dead"], group, 2 * PARKED)
        assert {d.message_id for d in parked} <= {d.message_id for d in letters}
        assert len(letters) == 2 * PARKED

        # Every connection went to the next node in the URL, once.
        moved = reconnected_to(caplog.text)
        assert moved and set(moved) == {next_node.address}, moved

        # The killed node comes back and rejoins; the bus notices nothing but a line.
        lost_lines = caplog.text.count("lost the connection")
        started = time.monotonic()
        await anyio.to_thread.run_sync(first_node.start)
        running = await anyio.to_thread.run_sync(rabbit_cluster.wait_running, 3)
        rejoined = time.monotonic() - started
        assert first_node.nodename in running
        numbers = range(TOTAL, TOTAL + after.total)
        await publish_paced(first, topics["stream"], numbers, after, per_second=500)
        await wait_for(after.all_delivered, 30, "delivered after the rejoin")
        assert len(after.published) == after.total
        assert caplog.text.count("lost the connection") == lost_lines

    print("\n" + ledger.report("cluster, bus's node killed"))
    print(
        f"[cluster, bus's node killed]   request-reply back {request_back:.1f}s after the kill "
        f"(failed first: {failures}); node restarted and rejoined in {rejoined:.1f}s; "
        f"retries parked before the kill: {slow_back}"
    )
    assert published_at_kill < TOTAL, "the kill came mid-stream"
    assert len(ledger.published) + len(ledger.failed) == TOTAL
    lost = ledger.lost()
    assert not lost, f"lost {len(lost)} published messages, e.g. {lost[:10]}"


async def test_a_reply_to_a_requester_whose_node_died_is_dropped(
    rabbit_cluster: RabbitCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ 3.10 fails the responder's whole connection (541 INTERNAL_ERROR) on a
    reply to a direct reply-to address whose node is down. The responder's bus drops that
    reply and every later one to the address: its connection fails once, not once per
    reply or per retry, and it goes on serving other requesters."""
    caplog.set_level(logging.INFO, "bus.rabbitmq")
    tag = unique("deadreply")
    n1, n2, n3 = rabbit_cluster.nodes
    options = {"exchange": tag, "queue_type": "quorum"}
    on_n1 = url_of([n1.address, n3.address], **options)  # the requester's node dies
    on_n2 = url_of([n2.address, n3.address], **options)
    on_n3 = url_of([n3.address, n2.address], **options)
    topic = f"{tag}.rpc"
    entered: list[int] = []
    gate = anyio.Event()
    service = bus.Service(f"{tag}-g")

    @service.respond(topic)
    async def slow(item: Numbered) -> Numbered:
        entered.append(item.n)
        await gate.wait()
        return Numbered(item.n + 1)

    async def ask(requester: bus.Bus, n: int) -> None:
        with contextlib.suppress(bus.BusError):  # its node dies under it
            await requester.request(topic, Numbered(n), response=Numbered, timeout=60.0)

    async with bus.Bus(on_n2, services=[service]):
        async with bus.Bus(on_n1) as doomed, anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(ask, doomed, n)
            await wait_for(lambda: len(entered) == 3, 30, "three requests being handled")
            await anyio.to_thread.run_sync(n1.kill)
            tg.cancel_scope.cancel()
        lost_before = caplog.text.count(f"at {n2.address} (")
        gate.set()  # the three replies go to an address whose node is down
        await wait_for(lambda: "replies to it are dropped" in caplog.text, 30, "the drop")
        async with bus.Bus(on_n3) as other:  # a requester on a live node is served
            with anyio.fail_after(60):
                reply = await other.request(topic, Numbered(41), response=Numbered, timeout=30)
            assert reply.n == 42
        lost = caplog.text.count(f"at {n2.address} (") - lost_before
    assert lost <= 1, f"the responder's connection failed {lost} times"

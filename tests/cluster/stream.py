"""A stream of numbered messages through a broker that is disrupted meanwhile, and its
ledger: what was published (``publish`` returned), what failed (PublishError), what was
delivered and how often, and how long the bus took to come back after each disruption."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import msgspec

import bus
from brokers.rabbitmq_cluster import RabbitCluster
from brokers.rabbitmq_node import RabbitNode

log = logging.getLogger("tests.cluster")


class Numbered(msgspec.Struct):
    n: int


@dataclass
class Outage:
    """One disruption: when the broker went, when it was back, when the bus was."""

    what: str
    down_at: float
    back_at: float = 0.0
    delivered_at: float = 0.0
    """The first delivery after ``back_at``: consumers resumed."""
    published_at: float = 0.0
    """The first publish returned after ``back_at``."""

    def figures(self) -> str:
        return (
            f"{self.what}: broker out {self.back_at - self.down_at:.1f}s, "
            f"consumers back {self.delivered_at - self.down_at:.1f}s and publishers back "
            f"{self.published_at - self.down_at:.1f}s after it went"
        )


@dataclass
class Ledger:
    total: int
    published: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    """Messages whose publish raised, and what it raised: not counted as published."""
    delivered: Counter[int] = field(default_factory=Counter)
    outages: list[Outage] = field(default_factory=list)
    waited: int = 0
    """Publishes that took over a second (through an outage) and returned."""
    started: float = field(default_factory=time.monotonic)
    _last_delivery: float = 0.0
    _last_publish: float = 0.0

    def deliver(self, n: int) -> None:
        self.delivered[n] += 1
        self._last_delivery = now = time.monotonic()
        for outage in self.outages:
            if outage.back_at and not outage.delivered_at:
                outage.delivered_at = now

    def publish_returned(self, n: int) -> None:
        self.published.add(n)
        self._last_publish = now = time.monotonic()
        for outage in self.outages:
            if outage.back_at and not outage.published_at:
                outage.published_at = now

    def went(self, what: str) -> Outage:
        outage = Outage(what, time.monotonic())
        self.outages.append(outage)
        return outage

    def lost(self) -> list[int]:
        return sorted(self.published - self.delivered.keys())

    def duplicated(self) -> int:
        return sum(count - 1 for count in self.delivered.values() if count > 1)

    def all_delivered(self) -> bool:
        return self.published <= self.delivered.keys()

    def report(self, name: str) -> str:
        wall = time.monotonic() - self.started
        lines = [
            f"[{name}] published {len(self.published)} of {self.total} "
            f"(PublishError {len(self.failed)}, {self.waited} returned after waiting "
            f"over 1s), delivered {len(self.delivered)} distinct "
            f"({sum(self.delivered.values())} deliveries), lost {len(self.lost())}, "
            f"duplicated {self.duplicated()}, wall {wall:.1f}s",
            *(f"[{name}]   {outage.figures()}" for outage in self.outages),
        ]
        return "\n".join(lines)


async def publish_paced(
    publisher: bus.Bus,
    topic: str,
    numbers: range,
    ledger: Ledger,
    *,
    per_second: float,
    batch: int = 20,
) -> None:
    """Publish ``numbers`` at about ``per_second``, ``batch`` in flight at a time; a
    publish that raises is put in ``ledger.failed`` and not retried."""

    async def one(n: int) -> None:
        began = time.monotonic()
        try:
            await publisher.publish(topic, Numbered(n))
        except bus.PublishError as exc:
            ledger.failed[n] = f"{type(exc).__name__}: {exc}"
            return
        if time.monotonic() - began > 1.0:
            ledger.waited += 1
        ledger.publish_returned(n)

    for start in range(0, len(numbers), batch):
        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            for n in numbers[start : start + batch]:
                tg.start_soon(one, n)
        await anyio.sleep(max(0.0, began + batch / per_second - time.monotonic()))


async def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Until ``condition()`` holds; fails naming ``what`` after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:.0f}s: {what}") from None


def queue_depths(node: RabbitNode, prefix: str) -> dict[str, int]:
    """Ready messages of every queue on ``node`` whose name starts with ``prefix``."""
    out = node.ctl("list_queues", "-q", "--no-table-headers", "name", "messages")
    depths = {}
    for line in out.splitlines():
        name, _, count = line.rpartition("\t")
        if name.startswith(prefix):
            depths[name] = int(count)
    return depths


async def back_or_held(
    cluster: RabbitCluster,
    done: Callable[[], bool],
    missing: Callable[[], int],
    queues: str,
    what: str,
    wait: float = 30.0,
) -> str:
    """Until ``done()`` holds, or the broker is seen holding what is ``missing()``.

    Retries whose quorum delay queue changed leader are at risk on RabbitMQ 3.10.8: their
    dead-lettering can be stranded (rabbitmq-server#7677), and expired retries were seen
    left ready in the queue for good (neither a restart of its members nor a basic.get
    let them out). If ``done`` does not hold within ``wait`` seconds, the
    operator's recovery (README, "Running on a cluster": restart the members of the
    delay queues) is applied and ``done`` awaited again; if it still does not hold, the
    delay queues whose names hold ``queues`` must hold at least the missing retries: held
    by the broker past their time, not lost. Returns what happened, for the report."""
    with anyio.move_on_after(wait):
        while not done():
            await anyio.sleep(0.05)
    if done():
        return "back by themselves"
    before = await anyio.to_thread.run_sync(cluster.queues, queues)
    log.warning("%s not back: %s; restarting the delay queues' members", what, before)
    await anyio.to_thread.run_sync(cluster.restart_dead_lettering)
    with anyio.move_on_after(wait):
        while not done():
            await anyio.sleep(0.05)
    if done():
        return f"back after the operator's recovery (held before it: {before})"
    listed = await anyio.to_thread.run_sync(cluster.queues, queues)
    held = sum(int(line.split("\t")[2]) for line in listed)
    if held >= missing():
        return f"{missing()} held by the broker past their time, not lost: {listed}"
    everything = "\n".join(await anyio.to_thread.run_sync(cluster.queues, ""))
    raise AssertionError(
        f"{what}: {missing()} missing, {held} held by the delay queues; queues:\n{everything}"
    )


async def recover_stranded(
    cluster: RabbitCluster, recovered: dict[str, int], stop: anyio.Event, every: float = 5.0
) -> None:
    """What README asks of an operator of RabbitMQ 3.10.8, until ``stop``: every ``every``
    seconds, look for retries stranded in quorum delay queues, and when the same queues
    hold some twice in a row (not a dead letter on its way), restart their members.
    What was recovered is added to ``recovered``."""
    seen: dict[str, int] = {}
    while not stop.is_set():
        with anyio.move_on_after(every):
            await stop.wait()
        if stop.is_set():
            return
        found = await anyio.to_thread.run_sync(cluster.stranded)
        now = {queue: n for queue, n in found.items() if ":delay:" in queue}
        still = {queue: n for queue, n in now.items() if queue in seen}
        if still:
            log.warning("stranded by RabbitMQ: %s; restarting their queues' members", still)
            recovered.update(still)
            await anyio.to_thread.run_sync(cluster.restart_dead_lettering)
            now = {}
        seen = now


async def held_in_delay_queues(cluster: RabbitCluster, containing: str) -> int:
    """Messages in the quorum delay queues whose names hold ``containing``."""
    listed = await anyio.to_thread.run_sync(cluster.queues, containing)
    return sum(int(line.split("\t")[2]) for line in listed if ":delay:" in line)

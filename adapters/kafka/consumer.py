"""One member of a consumer group on a topic and on its group's retry topic.

A subscription's Kafka consumer group is ``<group>:<topic>``, one per (group, topic): the
members of one topic rebalance without pausing the service's other topics, so a handler
that requests a sibling topic of its own service never waits on its own rebalance. (Bus
group names and topics hold no ':', so no two subscriptions share an id.)

The member is composed of:

- a fetch loop (here) that reads into the read-ahead (readahead.py), from which
  ``poll``/``__anext__`` hand records out in the order read; it never stops polling,
  with its partitions paused when it must not read (pauses.py), so aiokafka keeps it
  in its group however slow its handlers;
- timers for records not yet due (timers.py);
- commits of what is settled (commits.py);
- the rebalance listener (rebalance.py) and the handed-out marks (claims.py, marks.py),
  committed before a batch is handed out, so whoever gets a record after this member
  dies holding it counts a redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import tenacity
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from adapters.kafka.claims import Claims
from adapters.kafka.commits import Commits, commit_bound
from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import due_of
from adapters.kafka.delivery import KafkaDelivery
from adapters.kafka.marks import Marks
from adapters.kafka.offsets import PartitionOffsets
from adapters.kafka.partition import Item, Partition
from adapters.kafka.pauses import Pauses
from adapters.kafka.readahead import ReadAhead
from adapters.kafka.rebalance import Rebalance, revoke_bound
from adapters.kafka.timers import Timers
from bus.message import Message

log = logging.getLogger("bus.kafka")

Resend = Callable[[Message, float | None], Awaitable[None]]
"""Produce a copy: to the retry topic due in ``delay`` seconds, or (None) to the DLQ."""

FETCH_WAIT_MS = 1000  # a fetch waits this long for records before the loop goes round
GIVE_BACK_PAUSE = (0.1, 5.0)  # a record given back again waits 0.1 s, doubling up to 5 s


def member_group(group: str, topic: str) -> str:
    """The Kafka consumer group of ``group``'s subscription to ``topic``."""
    return f"{group}:{topic}"


class KafkaConsumer:
    """bus.transport.Consumer for one group member (see the module)."""

    def __init__(
        self,
        config: KafkaConfig,
        topics: list[str],
        group: str,
        resend: Resend,
        on_close: Callable[[KafkaConsumer], None],
        recreate: Callable[[], Awaitable[None]],
    ) -> None:
        """``recreate``: make this member's topics (and its group's dead-letter topic)
        again, once it was dropped from its group: the broker may have restarted empty."""
        self._topics = topics
        self.topic = topics[0]
        self.group_id = member_group(group, self.topic)
        self.resend = resend
        self._on_close = on_close
        self._recreate = recreate
        self._client = AIOKafkaConsumer(
            **config.client_options(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            # How long the group waits for this member to rejoin (its revocation waits on
            # handlers): aiokafka's default is the session timeout, seconds.
            rebalance_timeout_ms=config.max_poll_interval_ms,
        )
        self._parts: dict[TopicPartition, Partition] = {}  # assigned now
        self._ahead = ReadAhead(config.read_ahead)
        self._pauses = Pauses(self._client, topics[1])
        self._timers = Timers(self._ahead, self._pauses, config.read_ahead)
        self._commits = Commits(
            self._client,
            config.commit_interval_ms,
            topics[0],
            bound=commit_bound(config),
            in_group=self._in_group,
        )
        self._claims = Claims(Marks(config, self.group_id), self._parts, 2 * config.read_ahead)
        self._rebalance = Rebalance(
            self._parts,
            ahead=self._ahead,
            timers=self._timers,
            pauses=self._pauses,
            commits=self._commits,
            claims=self._claims,
            position=self._client.position,
            wait_bound=revoke_bound(config.max_poll_interval_ms),
            on_dropped=self._dropped,
        )
        # While nothing may be read, poll this often: well within max_poll_interval_ms.
        self._keepalive = min(1.0, config.max_poll_interval_ms / 4000)
        # A failed poll is retried 0.05 s later, doubling up to 5 s (with jitter), until
        # one succeeds: aiokafka reconnects by itself, and the fetch loop must not die.
        self._retrying = tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential(multiplier=0.05, max=5.0)
            + tenacity.wait_random(0, 0.05),
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, Exception) and not isinstance(e, ConsumerStoppedError)
            ),
            before_sleep=self._fetch_failed,
            reraise=True,
        )
        self._stopped = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._coordinator: Any = None  # aiokafka's, made by its start (_in_group)

    @property
    def assigned(self) -> asyncio.Event:
        """Set once this member was first given partitions (tests wait on it)."""
        return self._rebalance.assigned

    @property
    def revoking(self) -> asyncio.Event:
        """Set while a revocation waits on handed-out records (tests wait on it)."""
        return self._rebalance.revoking

    async def start(self) -> None:
        await self._claims.marks.start()
        await self._client.start()
        coordinator = getattr(self._client, "_coordinator", None)
        self._coordinator = coordinator if hasattr(coordinator, "generation") else None
        self._client.subscribe(self._topics, listener=self._rebalance)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._fetch()),
            loop.create_task(self._commits.run(self._parts.values)),
        ]

    # -- handing out ---------------------------------------------------------------

    def __aiter__(self) -> KafkaConsumer:
        return self

    def poll(self) -> KafkaDelivery | None:
        """The next delivery if one is at hand, else None (the core's fast path)."""
        coordinator = self._coordinator  # _in_group, inlined: this runs per record
        if self._stopped or (coordinator is not None and coordinator.generation < 0):
            return None
        ahead = self._ahead
        ready = ahead.ready
        if not ready:
            return None
        part, offset, record, given = ready[0]
        if not part.owned:  # revoked: ReadAhead.take skips what it holds
            item = ahead.take()
            if item is None:
                return None
            part, offset, record, given = item
        else:
            ready.popleft()
            if ahead.filling and len(ready) <= ahead.low_water:
                ahead.room_made()
        part.held += 1
        if offset > part.handed:
            part.handed = offset
        # Read by an earlier owner (below its mark): one redelivery, however often.
        redeliveries = given + 1 if offset < part.redone else given
        return KafkaDelivery(self, part, offset, record, redeliveries, given)

    async def __anext__(self) -> KafkaDelivery:
        while True:
            delivery = self.poll()
            if delivery is not None:
                return delivery
            if self._stopped:
                raise StopAsyncIteration
            await self._ahead.wait()

    def _dropped(self) -> None:
        """The group dropped this member, which held partitions: make its topics again in
        the background (the rejoin goes on meanwhile), then refresh the metadata so that
        a topic made only now is in the next assignment."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._remake())
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    async def _remake(self) -> None:
        try:
            await self._recreate()
        except Exception as exc:  # the broker still gone: the fetch loop keeps retrying
            log.warning("could not make %s again after leaving its group: %s", self.topic, exc)
            return
        client = getattr(self._client, "_client", None)  # aiokafka has no public refresh
        if client is not None:
            client.force_metadata_update()

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    def _in_group(self) -> bool:
        """False once aiokafka learnt this member was dropped from its group (it resets
        the generation), until it rejoins: its partitions may be another's by now, and
        the revocation that drops their records comes only with the rejoin."""
        coordinator = self._coordinator
        return coordinator is None or coordinator.generation >= 0

    def settle(self, part: Partition, offset: int) -> None:
        """A handed-out record is done with (acked, retried or dead-lettered)."""
        if not part.live:
            return  # revoked meanwhile: its next owner gets it again
        part.offsets.settle(offset)
        part.held -= 1
        if not part.held:
            self._rebalance.settled.set()
        self._commits.dirty = True

    def give_back(self, part: Partition, offset: int, record: Any, given: int) -> None:
        """A handed-out record could not be settled: hand it out again, first in line
        (after a growing pause if it came back before), counted as a redelivery. It
        stays unsettled, so it holds its partition's commit position only while this
        member still has it to hand out."""
        if not part.live:
            return  # revoked meanwhile: its next owner gets it again
        self._release(part)
        if self._stopped or not part.owned:
            return  # unsettled: the next owner gets it again
        item = (part, offset, record, given + 1)
        if given == 0:
            self._ahead.put_back(item)
        else:
            first, most = GIVE_BACK_PAUSE
            self._timers.given_back(item, min(most, first * 2 ** (given - 1)))

    def _release(self, part: Partition) -> None:
        part.held -= 1
        if not part.held:
            self._rebalance.settled.set()

    # -- reading -------------------------------------------------------------------

    async def _fetch(self) -> None:
        ahead = self._ahead
        pauses = self._pauses
        try:
            while True:
                if self._stopped:  # every partition paused: poll only to stay in the group
                    await self._accept(await self._get(int(self._keepalive * 1000), 1))
                    continue
                if ahead.full:
                    await ahead.room(self._keepalive)
                    if ahead.full and not self._stopped:
                        # Still nothing may be read: poll with every partition paused, so
                        # aiokafka sees this member alive and keeps it in the group.
                        if not pauses.full:
                            pauses.set(full=True)
                        await self._accept(await self._get(0, 1))
                    continue
                if pauses.full:
                    pauses.set(full=False)
                await self._accept(await self._get(FETCH_WAIT_MS, ahead.limit - len(ahead)))
        except ConsumerStoppedError:
            return

    async def _get(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[object]]:
        """One poll, retried on failure (see ``_retrying``). The common case is one call:
        tenacity's loop is entered only once a poll failed (it costs more than a poll
        that finds records waiting)."""
        failed: Exception | None = None
        try:
            got: dict[TopicPartition, list[object]] = await self._client.getmany(
                timeout_ms=timeout_ms, max_records=max(1, max_records)
            )
            return got
        except ConsumerStoppedError:
            raise
        except Exception as exc:
            failed = exc
        async for attempt in self._retrying:
            with attempt:
                if failed is not None:  # the failure seen is the loop's first attempt
                    seen, failed = failed, None
                    raise seen
                batches: dict[TopicPartition, list[object]] = await self._client.getmany(
                    timeout_ms=timeout_ms, max_records=max(1, max_records)
                )
                return batches
        raise AssertionError("not reached: tenacity retries until it returns")

    def _fetch_failed(self, state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("fetch from %s failed, retrying in %.2f s: %s", self._topics[0], wait, exc)

    async def _accept(self, batches: Mapping[TopicPartition, Sequence[object]]) -> None:
        if not batches:
            return
        if not self._stopped:
            await self._claims.before_handout(batches)
        now_ms = time.time() * 1000
        ahead = self._ahead
        stopped = self._stopped
        retry_topic = self._topics[1]
        for tp, records in batches.items():
            part = self._parts.get(tp)
            if part is None or not records:
                continue
            offsets: list[int] = [record.offset for record in records]  # type: ignore[attr-defined]
            try:
                part.offsets.take_all(offsets)
            except ValueError:  # the position went back (a reset): start afresh
                part.offsets = PartitionOffsets()
                part.offsets.take_all(offsets)
            if stopped:
                continue  # taken (so never committed past), never handed out
            if tp.topic != retry_topic:  # only retry copies have a due time
                ahead.extend(
                    [(part, offset, r, 0) for r, offset in zip(records, offsets, strict=True)]
                )
                continue
            items: list[Item] = []
            for record, offset in zip(records, offsets, strict=True):
                due = due_of(record)
                if due is not None and due > now_ms:
                    self._timers.retry((part, offset, record, 0), (due - now_ms) / 1000 + 0.001)
                else:
                    items.append((part, offset, record, 0))
            ahead.extend(items)
        ahead.wake(len(ahead))

    # -- stopping ------------------------------------------------------------------

    async def stop_fetching(self) -> None:
        """Read nothing more; what was read and not handed out is dropped, unsettled, so
        the next owner of its partition gets it as new (the marks are lowered to what
        was handed out when this member leaves). Handed-out records can still be settled
        until ``close``. The member keeps polling, all paused, to stay in its group."""
        if self._stopped:
            return
        self._stopped = True
        self._claims.stopped = True
        with contextlib.suppress(Exception):  # a client that never started: nothing to pause
            self._pauses.set(stopped=True)
        self._timers.drop(self._parts.values())
        self._ahead.clear()
        self._ahead.wake_all()  # idle workers: StopAsyncIteration

    async def close(self) -> None:
        """Stop consuming; commit what is settled; the rest goes to other members."""
        if self._closed:
            return
        self._closed = True
        await self.stop_fetching()
        self._rebalance.closing = True
        self._rebalance.settled.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        parts = list(self._parts.values())
        try:
            await self._commits.commit(parts)
            if self._in_group():  # dropped (a broker restarted empty): marks stay as claimed
                await self._claims.lower(parts)
        finally:
            for part in parts:
                part.owned = part.live = False
            self._parts.clear()
            self._on_close(self)
            try:
                await self._client.stop()
            finally:
                await self._claims.marks.stop()

"""The relay: sends committed outbox rows to the broker, then deletes them.

Every Bus with a store runs one. A round claims up to ``batch`` rows under a lease
(``Store.claim``: rows of one (topic, key) are never held by two relays at once, and
come in ``id`` order), publishes them through the ``send`` its Bus gives it (the
transport's publish, which returns once the broker confirmed it; ``bus.testing`` wraps
it to see what the outbox sends), then in one transaction deletes the sent rows, moves rows
that can never be sent to ``bus_outbox_dead`` with the reason, and gives back the rest.

- Order per key: the rows of one key are sent one after the other, each after the
  previous one's confirm; a row that fails stops its key for this round (the rows behind
  it are given back with it). Rows without a key, and different keys, go concurrently.
- Fencing: a relay starts no send later than half its lease after it claimed, so one
  that stalled (a paused process, a lost network) and wakes after another relay took its
  rows over sends none of them again out of order; its deletes and give-backs only touch
  rows it still holds.
- At least once: a relay killed between a confirm and the delete leaves rows that the
  next relay (after the lease) sends again, with the same message id, which an
  ``idempotent=True`` consumer ignores.
- Woken at commit (by the store: PostgreSQL LISTEN/NOTIFY, in-process for SQLite), and
  every ``poll_interval`` seconds besides; a database or broker that fails is retried
  with a growing pause. Housekeeping (inbox rows past retention) runs every
  ``housekeeping_interval``. ``Relay.idle`` says it waits with nothing known to send
  (a test kit waits for that before it calls a test settled).
- Metrics (with an OpenTelemetry SDK installed): the gauges ``bus.outbox.size`` (rows
  waiting) and ``bus.outbox.lag`` (seconds since the oldest waiting row was committed),
  per store (attribute ``bus.store``, its URL without password), measured by the relay
  every ``STATS_INTERVAL`` seconds; ``Relay.stats`` holds the last measure.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import anyio
import msgspec
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from bus import names
from bus.dead_letter import type_name
from bus.errors import ConfigError, DecodeError, MessageTooLarge
from bus.message import Message
from bus.store.base import OutboxRow, OutboxStats, Store
from bus.telemetry import Telemetry

log = logging.getLogger("bus.relay")

Send = Callable[[str, Message], Awaitable[None]]
"""How a relay sends one message to a topic: returns once the broker confirmed it."""

_decode_headers = msgspec.json.Decoder(dict[str, str]).decode
# Errors a row will raise however often it is sent: it goes to the dead letters.
_NEVER_SENDABLE = (MessageTooLarge, ConfigError, DecodeError)


STATS_INTERVAL = 1.0
"""Seconds between measures of the outbox for its gauges, while metrics are on."""

# The last measure of each store's outbox in this process, by label, which the gauges'
# callbacks report (the metrics API reads gauges through callbacks only).
_measured: dict[str, OutboxStats] = {}
_gauges_of: list[object] = []  # the meter provider the gauges were made with


def _observe(field: str) -> Callable[[CallbackOptions], list[Observation]]:
    def callback(_: CallbackOptions) -> list[Observation]:
        return [Observation(getattr(s, field), {"bus.store": k}) for k, s in _measured.items()]

    return callback


def _make_gauges() -> None:
    """The outbox gauges, made once per meter provider (it keeps every instrument made)."""
    provider = metrics.get_meter_provider()
    if _gauges_of and _gauges_of[0] is provider:
        return
    _gauges_of[:] = [provider]
    meter = metrics.get_meter("bus")
    meter.create_observable_gauge(
        "bus.outbox.size", [_observe("size")], "{message}", "outbox rows waiting to be sent"
    )
    meter.create_observable_gauge(
        "bus.outbox.lag",
        [_observe("lag")],
        "s",
        "seconds since the oldest waiting outbox row was committed",
    )


def _pause(failures: int) -> float:
    """Seconds to wait after ``failures`` failed rounds in a row: 0.1 s doubling to 5 s,
    with jitter so relays do not retry in step."""
    return float(min(5.0, 0.1 * 2 ** min(failures - 1, 6)) + random.uniform(0, 0.1))


class _Round:
    """What became of one claimed batch."""

    __slots__ = ("dead", "failed", "released", "sent")

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.dead: list[tuple[int, str]] = []
        self.released: list[tuple[int, str]] = []
        self.failed = False


class Relay:
    """The relay of one Bus (see the module)."""

    def __init__(
        self, store: Store, send: Send, telemetry: Telemetry, max_message_size: int
    ) -> None:
        self._store = store
        self._publish = send
        self._telemetry = telemetry
        self._max_message_size = max_message_size
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wakeup = anyio.Event()
        self._waiting = False
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()
        self._unfinished: _Round | None = None
        self._next_housekeeping = 0.0
        self._next_stats = 0.0
        self.stats: OutboxStats | None = None
        """The outbox as last measured (only while metrics are on)."""
        self.done = anyio.Event()
        self.sent = 0
        """Messages this relay has had confirmed by the broker."""

    def wake(self) -> None:
        """Look at the outbox now (rows were committed)."""
        self._wakeup.set()

    @property
    def idle(self) -> bool:
        """Waiting for work with none known: its last look found the outbox empty and no
        commit woke it since. Both stores wake their own bus's relay at commit, so rows
        this process committed are sent by the time it is idle again."""
        return self._waiting and not self._wakeup.is_set()

    async def run(self) -> None:
        if self._telemetry.metering:
            _make_gauges()
        try:
            with self._scope:
                await self._loop()
        finally:
            _measured.pop(self._store.label, None)
            self.done.set()

    async def stop(self, deadline: float) -> None:
        """Send what is committed now, for up to ``deadline`` seconds, then stop."""
        self._stop.set()
        self._wakeup.set()
        with anyio.move_on_after(deadline):
            await self.done.wait()
        if not self.done.is_set():
            log.warning("close deadline passed with outbox rows unsent: the next relay sends them")
            self._scope.cancel()
            await self.done.wait()

    async def _loop(self) -> None:
        options = self._store.options
        failures = 0
        while True:
            stopping = self._stop.is_set()
            # A new event before looking: a commit from now on wakes the wait below.
            self._wakeup = anyio.Event()
            claimed_at = time.monotonic()
            try:
                await self._maintain()
                rows = await self._store.claim(self.owner, options.batch, options.lease)
            except Exception as exc:
                if stopping:
                    return
                failures += 1
                log.warning("outbox relay: the store failed (%s: %s); retrying",
                            type_name(exc), exc)  # fmt: skip
                await self._pause(failures)
                continue
            if not rows:
                if stopping:
                    return
                failures = 0
                self._waiting = True
                try:
                    with anyio.move_on_after(options.poll_interval):
                        await self._wakeup.wait()
                finally:
                    self._waiting = False
                continue
            done = await self._send(rows, claimed_at + options.lease / 2)
            await self._finish(done)
            if done.failed:
                if stopping:
                    return
                failures += 1
                await self._pause(failures)
            else:
                failures = 0

    async def _maintain(self) -> None:
        """Re-listen if needed, retry an unfinished round's bookkeeping, and remove inbox
        rows past retention when it is time."""
        await self._store.listen(self.wake)
        if self._unfinished is not None:
            await self._finish(self._unfinished, raising=True)
        if time.monotonic() >= self._next_housekeeping:
            options = self._store.options
            removed = await self._store.prune_inbox(options.inbox_retention)
            self._next_housekeeping = time.monotonic() + options.housekeeping_interval
            if removed:
                log.info("removed %d inbox row(s) past retention", removed)
        if self._telemetry.metering and time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + STATS_INTERVAL
            self.stats = _measured[self._store.label] = await self._store.outbox_stats()

    async def _pause(self, failures: int) -> None:
        with anyio.move_on_after(_pause(failures)):
            await self._stop.wait()

    async def _send(self, rows: Sequence[OutboxRow], fence: float) -> _Round:
        runs: dict[object, list[OutboxRow]] = {}
        for row in rows:  # in id order, so each run is too
            runs.setdefault(row.id if row.key is None else (row.topic, row.key), []).append(row)
        done = _Round()
        async with anyio.create_task_group() as tg:
            for run in runs.values():
                tg.start_soon(self._send_run, run, fence, done)
        return done

    async def _send_run(self, run: list[OutboxRow], fence: float, done: _Round) -> None:
        """Send the rows of one key in order; stop at the first that fails."""
        for i, row in enumerate(run):
            remaining = fence - time.monotonic()
            if remaining <= 0:
                done.released.extend((r.id, "lease ran short before it was sent") for r in run[i:])
                done.failed = True
                return
            try:
                message = self._message(row)
                with anyio.fail_after(remaining + self._store.options.lease / 2):
                    await self._publish(row.topic, message)
            except _NEVER_SENDABLE as exc:
                reason = f"{type_name(exc)}: {exc}"[:1024]
                log.error(
                    "outbox row %d (message %s to %r) can never be sent, moved to "
                    "bus_outbox_dead: %s", row.id, row.message_id, row.topic, reason,
                )  # fmt: skip
                done.dead.append((row.id, reason))
                continue
            except Exception as exc:
                error = f"{type_name(exc)}: {exc}"[:1024]
                log.warning("outbox relay: sending message %s to %r failed (%s); it stays "
                            "in the outbox", row.message_id, row.topic, error)  # fmt: skip
                done.released.extend((r.id, error) for r in run[i:])
                done.failed = True
                return
            done.sent.append(row.id)
            self.sent += 1
            self._telemetry.count("published", row.topic)

    def _message(self, row: OutboxRow) -> Message:
        """The message a row holds; raises one of _NEVER_SENDABLE for a row no broker
        can take (written by hand or by another bus with other limits)."""
        names.check_topic(row.topic)
        if len(row.body) > self._max_message_size:
            raise MessageTooLarge(
                f"{len(row.body)} bytes, over this bus's max_message_size "
                f"({self._max_message_size} bytes)"
            )
        try:
            headers = _decode_headers(row.headers)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"unreadable headers: {exc}") from None
        return Message(
            id=row.message_id,
            body=row.body,
            headers=headers,
            key=row.key,
            correlation_id=row.correlation_id,
            content_type=row.content_type,
        )

    async def _finish(self, done: _Round, *, raising: bool = False) -> None:
        """Record a round in the store; kept for the next round if the store fails (the
        rows stay leased meanwhile, so nobody sends them again before)."""
        if not (done.sent or done.dead or done.released):
            return
        try:
            # Shielded (a close must not lose a round it sent), but bounded.
            with anyio.move_on_after(self._store.options.lease, shield=True) as bound:
                await self._store.finish(self.owner, done.sent, done.dead, done.released)
            if bound.cancelled_caught:
                raise TimeoutError("the store did not answer within the lease")
            self._unfinished = None
        except Exception as exc:
            self._unfinished = done
            if raising:
                raise
            log.warning("outbox relay: recording %d sent row(s) failed (%s: %s); retrying",
                        len(done.sent), type_name(exc), exc)  # fmt: skip
            done.failed = True

"""Presence, the bus's service discovery: running services announce themselves on a
topic at an interval; ``survey`` watches that topic and tells who is there.

An instance that stops gracefully says so; one that dies just goes silent, and a survey
marks an instance silent when its last word is older than twice its interval.

Each announcement also carries the service's running totals of messages handled, failed,
retried and dead-lettered per subscription (from ``bus.telemetry.tallies``, so only while
an OpenTelemetry SDK is installed): the console draws its flow charts from them. Reading
them costs one look-up per subscription per interval, nothing per message.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec

from bus import telemetry
from bus.clock import REAL, Clock
from bus.dead_letter import now_rfc3339
from bus.errors import ConfigError

if TYPE_CHECKING:
    from bus.service import Service
    from bus.transport import Transport

log = logging.getLogger("bus.presence")

TOPIC = "bus.presence"
DEFAULT_INTERVAL = 5.0
ENV_INTERVAL = "BUS_PRESENCE_INTERVAL"

State = Literal["running", "stopped"]
Publish = Callable[[str, object], Awaitable[object]]


COUNTED = ("handled", "failed", "retried", "dead_lettered")


class Count(msgspec.Struct, frozen=True, array_like=True):
    """A subscription's running totals in one instance, since it started."""

    topic: str
    group: str
    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0


class Announcement(msgspec.Struct, frozen=True):
    service: str
    instance: str
    host: str
    pid: int
    handlers: list[str]
    started: str
    sent: str
    interval: float
    state: State = "running"
    counts: list[Count] = []
    """Empty when the instance runs without an OpenTelemetry SDK (nothing is counted)."""


class Instance(msgspec.Struct):
    """What a survey knows of one instance."""

    last: Announcement
    silent_for: float  # seconds from its last word to the survey's end

    @property
    def status(self) -> str:
        if self.last.state == "stopped":
            return "stopped"
        return "silent" if self.silent_for > 2 * self.last.interval else "live"


def interval_from_env() -> float | None:
    """The announcement interval: ``$BUS_PRESENCE_INTERVAL`` seconds (0 turns it off)."""
    raw = os.environ.get(ENV_INTERVAL)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_INTERVAL}={raw!r}: use a number of seconds (0 turns presence off)"
        ) from None
    if value != value or value == float("inf"):
        raise ConfigError(f"{ENV_INTERVAL}={raw!r}: use a finite number of seconds")
    return value if value > 0 else None


def describe_handlers(service: Service) -> list[str]:
    return [
        f"{'respond' if s.reply else 'subscribe'} {s.topic} "
        f"(group {s.group}, concurrency {s.concurrency})"
        for s in service.subscriptions
    ]


_HANDLER = re.compile(r"(subscribe|respond) (\S+) \(group ([^,)]+),")


def parse_handler(text: str) -> tuple[str, str, str] | None:
    """(``subscribe`` or ``respond``, topic, group) of a ``describe_handlers`` line."""
    match = _HANDLER.match(text)
    return (match[1], match[2], match[3]) if match else None


def counts(service: Service) -> list[Count]:
    """``service``'s running totals per subscription, from this process's tallies."""
    tallies = telemetry.tallies
    if not tallies:
        return []
    found = []
    for s in service.subscriptions:
        values = [tallies.get((name, s.topic, s.group)) for name in COUNTED]
        found.append(Count(s.topic, s.group, *(t.value if t else 0 for t in values)))
    return found


class Announcer:
    """Announces the services of one bus every ``interval`` seconds."""

    def __init__(
        self, publish: Publish, services: list[Service], interval: float, clock: Clock = REAL
    ) -> None:
        self._publish = publish
        self._sleep = clock.sleep
        self._interval = interval
        self._scope = anyio.CancelScope()
        started = now_rfc3339()
        host = socket.gethostname()
        instance = uuid.uuid4().hex[:12]
        self._services = services
        self._announcements = [
            Announcement(
                service=s.name,
                instance=f"{s.name}-{instance}",
                host=host,
                pid=os.getpid(),
                handlers=describe_handlers(s),
                started=started,
                sent=started,
                interval=interval,
            )
            for s in services
        ]

    async def _announce(self, state: State) -> None:
        sent = now_rfc3339()
        for a, service in zip(self._announcements, self._services, strict=True):
            announced = msgspec.structs.replace(a, sent=sent, state=state, counts=counts(service))
            await self._publish(TOPIC, announced)

    async def run(self) -> None:
        with self._scope:
            while not self._scope.cancel_called:
                try:
                    await self._announce("running")
                except Exception as exc:  # presence must never take a service down
                    log.warning("could not announce presence: %s", exc)
                await self._sleep(self._interval)

    async def stopped(self) -> None:
        # Stop the loop first, even if it has not run yet: a bus closed at once must
        # not announce itself running after it said it stopped.
        self._scope.cancel()
        with anyio.move_on_after(2.0):
            try:
                await self._announce("stopped")
            except Exception as exc:
                log.info("could not announce that this instance stopped: %s", exc)


async def survey(transport: Transport, window: float) -> list[Instance]:
    """Watch the presence topic for ``window`` seconds; every instance heard, by name."""
    consumer = await transport.consume(TOPIC, "bus-status", prefetch=100, ephemeral=True)
    decode = msgspec.json.Decoder(Announcement).decode
    seen: dict[str, tuple[Announcement, float]] = {}
    try:
        with anyio.move_on_after(window):
            async for delivery in consumer:
                try:
                    a = decode(delivery.message.body)
                except msgspec.DecodeError:
                    log.info("ignored a malformed presence announcement")
                else:
                    seen[a.instance] = (a, time.monotonic())
                await delivery.ack()
    finally:
        await consumer.close()
    end = time.monotonic()
    found = [Instance(last=a, silent_for=end - at) for a, at in seen.values()]
    return sorted(found, key=lambda i: (i.last.service, i.last.instance))

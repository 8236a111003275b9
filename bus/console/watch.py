"""The console's ear on the bus: it listens to presence announcements (through an
ephemeral group, like ``bus status``, leaving nothing behind on the broker), keeps the
latest word of every instance and feeds the flow charts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from bus import presence
from bus.console.flow import Flow
from bus.transport import Transport

log = logging.getLogger("bus.console")

GROUP = "bus-console"
FORGET_AFTER = 600.0
"""Seconds after which an instance that stopped or went silent is no longer listed."""


class Heard(msgspec.Struct):
    last: presence.Announcement
    at: float  # monotonic time it was heard


class Watcher:
    def __init__(self, flow: Flow, clock: Callable[[], float] = time.monotonic) -> None:
        self.flow = flow
        self._clock = clock
        self._heard: dict[str, Heard] = {}
        self.listening = anyio.Event()

    async def run(self, transport: Transport) -> None:
        """Listen until cancelled."""
        decode = msgspec.json.Decoder(presence.Announcement).decode
        consumer = await transport.consume(presence.TOPIC, GROUP, prefetch=100, ephemeral=True)
        self.listening.set()
        try:
            async for delivery in consumer:
                try:
                    self.heard(decode(delivery.message.body))
                except msgspec.DecodeError:
                    log.info("ignored a malformed presence announcement")
                await delivery.ack()
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.close()

    def heard(self, a: presence.Announcement) -> None:
        at = self._clock()
        self._heard[a.instance] = Heard(a, at)
        self.flow.heard(a.instance, a.counts, at)

    def _status(self, h: Heard, now: float) -> str:
        if h.last.state == "stopped":
            return "stopped"
        return "silent" if now - h.at > 2 * h.last.interval else "live"

    def instances(self) -> list[dict[str, Any]]:
        """Every instance heard (but those gone for long), by service and instance."""
        now = self._clock()
        for name, h in list(self._heard.items()):
            if self._status(h, now) != "live" and now - h.at > FORGET_AFTER:
                del self._heard[name]
                self.flow.forget(name)
        out = []
        for h in sorted(self._heard.values(), key=lambda h: (h.last.service, h.last.instance)):
            a = h.last
            out.append(
                {
                    "service": a.service,
                    "instance": a.instance,
                    "host": a.host,
                    "pid": a.pid,
                    "handlers": a.handlers,
                    "started": a.started,
                    "last_seen": a.sent,
                    "seen_ago": round(now - h.at, 1),
                    "interval": a.interval,
                    "status": self._status(h, now),
                    "counted": bool(a.counts),
                }
            )
        return out

    def subscriptions(self) -> list[tuple[str, str, bool]]:
        """(topic, group, is a responder) of every handler any instance announced."""
        found: set[tuple[str, str, bool]] = set()
        for h in self._heard.values():
            for handler in h.last.handlers:
                parsed = presence.parse_handler(handler)
                if parsed:
                    found.add((parsed[1], parsed[2], parsed[0] == "respond"))
        return sorted(found)

    def flow_snapshot(self) -> dict[str, Any]:
        return self.flow.snapshot(self._clock())

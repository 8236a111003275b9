"""TestBus: users' services on a private embedded broker, on a virtual clock, with
helpers to assert on what happened and faults to inject. The same test runs on a real
broker when a URL is given (``TestBus(url=...)``, pytest's ``--bus-url`` or
``$BUS_TEST_URL``): time is then real and ``settle()`` waits on it, with a deadline.

How the clock moves: a test's ``await`` lets the bus run; ``settle()`` and
``advance()`` run it until nothing more can happen at this instant (no message ready,
every running handler waiting on a request), then move the clock to the next timer (a
retry falling due, a request's timeout) and go on. A retry is never delivered before
its backoff: the broker holds it until the clock reaches its due time.

With a store (``TestBus(..., store="sqlite:///...")``) messages published in a
transaction count too: a commit wakes the bus's outbox relay at once (in this process),
and nothing is settled until the relay is idle again, every committed row sent (and
recorded: ``published()`` includes them). That wait is the store's real work, on no
timer of the clock.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from collections.abc import AsyncGenerator, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from bus.clock import REAL, Clock
from bus.dead_letter import DeadLetter
from bus.errors import BusError, ConfigError
from bus.registry import open_transport
from bus.service import Service
from bus.testing.clock import VirtualClock
from bus.testing.faults import Faults
from bus.testing.probe import Forgetful, Inspectable, Losable, Pending
from bus.testing.record import Call, Recorder, _clip
from bus.testing.report import NotSettled, Observed, describe_pending
from bus.testing.speaker import RecordingBus, wrap_services
from bus.url import redact, scheme

T = TypeVar("T")

ENV_URL = "BUS_TEST_URL"
VIRTUAL_TIMEOUT = 10.0  # real seconds settle() may take on the virtual clock
REAL_TIMEOUT = 30.0  # real seconds settle() may take on a real broker
QUIET = 0.1  # real seconds without activity that count as settled on a real broker
MAX_CALLS = 10_000  # handler calls one settle() may run before it calls it a loop

_configured_url: str | None = None


def configure(url: str | None) -> None:
    """Make ``url`` the broker of every TestBus made without one (the pytest plugin
    calls this with ``--bus-url``)."""
    global _configured_url
    _configured_url = url or None


def default_url() -> str | None:
    """``--bus-url``, else ``$BUS_TEST_URL``, else None (a private embedded broker).
    Never ``$BUS_URL``: a test must not reach whatever broker a shell points at."""
    return _configured_url or os.environ.get(ENV_URL) or None


class TestBus:
    """``async with TestBus(services=[...]) as t``: the services running on a private
    embedded broker and a virtual clock; or, given ``url`` (default: ``--bus-url`` or
    ``$BUS_TEST_URL``), on that broker in real time. ``options`` go to ``bus.Bus``."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        services: Iterable[Service] = (),
        url: str | None = None,
        *,
        settle_timeout: float | None = None,
        cleanup: bool = True,
        **options: Any,
    ) -> None:
        self.services = list(services)
        chosen = url or default_url()
        self._private = chosen is None
        self.url = chosen or f"memory://testbus-{uuid.uuid4().hex[:12]}"
        self.virtual = scheme(self.url) == "memory"
        """Whether time is virtual: on the embedded broker it is, on a real one not."""
        self.clock: Clock = VirtualClock() if self.virtual else REAL
        self.settle_timeout = settle_timeout or (VIRTUAL_TIMEOUT if self.virtual else REAL_TIMEOUT)
        self.recorder = Recorder()
        self.faults = Faults()
        self._cleanup = cleanup
        self._options = {"presence_interval": None, **options}
        self._bus: RecordingBus | None = None
        self.max_calls = MAX_CALLS
        self._first_call = 0
        """Handler calls one settle() may run before it calls it an endless cascade."""

    def __repr__(self) -> str:
        mode = "virtual time" if self.virtual else "real time"
        return f"TestBus({redact(self.url)!r}, {mode}, services={[s.name for s in self.services]})"

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> TestBus:
        if self._bus is not None:
            raise BusError("this TestBus is already open")
        bus = RecordingBus(self.url, services=(), recorder=self.recorder, faults=self.faults,
                           clock=self.clock, **self._options)  # fmt: skip
        lose = bus.transport.lose if isinstance(bus.transport, Losable) else None
        bus.services = wrap_services(self.services, self.recorder, self.faults, self.clock, lose)
        self._bus = bus
        await bus.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            await bus.close()
        finally:
            if self._cleanup or self._private:
                await self._forget(bus)
        left = self.faults.left()
        if left and exc_type is None:
            warnings.warn(f"faults armed that never fired: {'; '.join(left)}", stacklevel=2)

    async def _forget(self, bus: RecordingBus) -> None:
        """Delete the queues and groups this test's subscriptions made, where the
        adapter can (the embedded broker can; see bus.testing.probe)."""
        transport = open_transport(self.url)
        use_clock = getattr(transport, "use_clock", None)
        if not isinstance(transport, Forgetful):
            return
        if use_clock is not None:
            use_clock(self.clock)
        await transport.connect()
        try:
            for service in bus.services:
                for sub in service.subscriptions:
                    await transport.forget(sub.topic, sub.group)
        finally:
            await transport.close()

    @property
    def bus(self) -> RecordingBus:
        """The ``bus.Bus`` under the test bus (while open)."""
        if self._bus is None:
            raise BusError("the TestBus is not open: use `async with TestBus(...) as t`")
        return self._bus

    @property
    def now(self) -> float:
        """Seconds on the test bus's clock (virtual: from 0 at the start)."""
        return self.clock.monotonic()

    # -- speaking, as bus.Bus ---------------------------------------------------------

    async def publish(self, topic: str, payload: object, **options: Any) -> str:
        """``Bus.publish``: recorded, subject to ``fail_publish``."""
        return await self.bus.publish(topic, payload, **options)

    async def publish_many(
        self, topic: str, payloads: Iterable[object], **options: Any
    ) -> list[str]:
        return await self.bus.publish_many(topic, payloads, **options)

    async def request(
        self,
        topic: str,
        payload: object,
        *,
        response: type[T],
        timeout: float = 5.0,
        **options: Any,
    ) -> T:
        """``Bus.request``. On the virtual clock the test bus runs the services (and
        moves the clock) until the reply or the timeout comes."""
        call = self.bus.request(topic, payload, response=response, timeout=timeout, **options)
        if not self.virtual:
            return await call
        box: dict[str, Any] = {}

        async def run() -> None:
            try:
                box["result"] = await call
            except Exception as exc:
                box["error"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await self._drive(done=lambda: bool(box), what=f"request({topic!r})")
        if "error" in box:
            raise box["error"]
        result: T = box["result"]
        return result

    async def dead_letters(self, topic: str, *, group: str) -> AsyncGenerator[DeadLetter, None]:
        """``Bus.dead_letters``: each has ``reason``, ``exception_type``,
        ``exception_message`` and ``attempts``."""
        async with contextlib.aclosing(self.bus.dead_letters(topic, group=group)) as letters:
            async for letter in letters:
                yield letter

    async def replay(self, topic: str, *, group: str) -> int:
        return await self.bus.replay(topic, group=group)

    # -- time ---------------------------------------------------------------------------

    async def settle(self, timeout: float | None = None) -> None:
        """Run until nothing is in flight: no message ready, held or waiting for its
        retry, no handler running, no request waiting, no committed outbox row unsent
        (with a store). On the virtual clock, moves the clock through pending retries
        and timeouts; on a real broker, waits for every message published to a
        subscribed topic to be handled by each subscribed group (and every retry due to
        come). Raises ``NotSettled`` naming what is still
        pending after ``timeout`` real seconds (default ``settle_timeout``)."""
        if self.virtual:
            await self._drive(done=None, what="settle()", timeout=timeout)
        else:
            await self._settle_real(timeout or self.settle_timeout)

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, delivering on the way whatever falls due (a
        retry's delivery may make another retry fall due before the end: it too is
        delivered). On a real broker this sleeps for real."""
        if seconds < 0:
            raise ConfigError(f"advance({seconds}): time only goes forward")
        if not self.virtual:
            await anyio.sleep(seconds)
            return
        assert isinstance(self.clock, VirtualClock)
        until = self.clock.monotonic() + seconds
        await self._drive(done=None, until=until, what=f"advance({seconds})")

    # -- what happened ------------------------------------------------------------------

    def published(
        self, topic: str, Type: Any = None, where: Callable[[Any], bool] | None = None
    ) -> list[Any]:
        """The messages published to ``topic`` through this bus (by the test or by any
        handler, directly or through the outbox once the relay sent them), decoded, in
        order; as ``Type`` (which each must be), and only those
        for which ``where(message)`` is true."""
        found = []
        sent = [s for s in self.recorder.sent if s.topic == topic]
        for i, s in enumerate(sent, 1):
            if Type is not None and s.type_name != getattr(Type, "__qualname__", s.type_name):
                raise AssertionError(
                    f"message {i} of {len(sent)} published to {topic!r} is a {s.type_name}, "
                    f"not a {Type.__qualname__}: {s.show()} "
                    "(published(topic) without a Type gives each as it was published)"
                )
            try:
                payload = s.decode(Type)
            except Exception as exc:
                raise AssertionError(
                    f"message {i} of {len(sent)} published to {topic!r} does not decode as "
                    f"{getattr(Type, '__qualname__', Type)}: {exc}: {s.show()}"
                ) from None
            if where is None or where(payload):
                found.append(payload)
        what = f" as {Type.__qualname__}" if Type is not None else ""
        filtered = f", {len(found)} of them matching `where`" if where is not None else ""
        context = (
            f"t.published({topic!r}{what}): {len(sent)} message(s) published to {topic!r}"
            f"{filtered}\n{self.recorder.summary(exclude=topic)}"
        )
        return Observed(found, context)

    def calls(self, topic: str | None = None, *, group: str | None = None) -> list[Call]:
        """Every call of a handler (on ``topic``, of ``group``), in the order they began:
        each with its ``attempt``, ``payload``, ``outcome`` and ``error``."""
        return [
            c
            for c in self.recorder.calls
            if (topic is None or c.topic == topic) and (group is None or c.group == group)
        ]

    def handled(
        self,
        topic: str,
        Type: Any = None,
        where: Callable[[Any], bool] | None = None,
        *,
        group: str | None = None,
    ) -> list[Any]:
        """The payloads handlers on ``topic`` (of ``group``) handled successfully (their
        call returned), in order; each must be a ``Type``; only those matching ``where``."""
        calls = self.calls(topic, group=group)
        found = []
        for call in calls:
            if call.outcome != "returned":
                continue
            if Type is not None and not isinstance(call.payload, Type):
                raise AssertionError(
                    f"{call.handler} handled a {type(call.payload).__qualname__} on {topic!r}, "
                    f"not a {Type.__qualname__}: {_clip(repr(call.payload))}"
                )
            if where is None or where(call.payload):
                found.append(call.payload)
        lines = [f"t.handled({topic!r}): {len(calls)} call(s) of handlers on {topic!r}:"]
        lines += [f"  {c.show()}" for c in calls[:20]] or ["  none"]
        if not calls:
            lines.append(self.recorder.summary())
        return Observed(found, "\n".join(lines))

    # -- faults -------------------------------------------------------------------------

    def fail(
        self,
        topic: str,
        *,
        times: int = 1,
        group: str | None = None,
        error: BaseException | type[BaseException] | None = None,
    ) -> None:
        """The next ``times`` calls of the handler on ``topic`` (of ``group``, or any)
        raise ``error`` (default a RuntimeError) before the handler runs; the bus then
        retries or dead-letters by the handler's Retry, as it would any failure."""
        self.faults.arm(self.faults.handler, topic, group, times, error)

    def fail_publish(self, topic: str, *, times: int = 1) -> None:
        """The next ``times`` publishes to ``topic`` (by the test or a handler) raise
        ``bus.PublishError`` and send nothing."""
        self.faults.arm(self.faults.publish, topic, None, times)

    def time_out_requests(self, topic: str, *, times: int = 1) -> None:
        """The next ``times`` requests to ``topic`` get no reply: they raise
        ``bus.RequestTimeout`` once their timeout has passed (on the virtual clock,
        without waiting for it)."""
        self.faults.arm(self.faults.request, topic, None, times)

    def drop_consumer(self, topic: str, *, times: int = 1, group: str | None = None) -> None:
        """The consumer of the next ``times`` calls on ``topic`` dies while the handler
        runs: the handler runs to its end, but the broker already gave the message to
        the group again (``ctx.attempt`` one higher), and how the first run settles goes
        nowhere. Tests idempotency. Needs the embedded broker."""
        if not self.virtual:
            raise ConfigError(
                f"drop_consumer needs the embedded broker; {scheme(self.url)}:// cannot lose "
                "a delivery on purpose (skip this test when not t.virtual)"
            )
        self.faults.arm(self.faults.drop, topic, group, times)

    # -- running on the virtual clock --------------------------------------------------

    def _pending(self) -> list[Pending]:
        transport = self.bus.transport
        assert isinstance(transport, Inspectable)
        return transport.pending()

    def _relay_idle(self) -> bool:
        """No committed outbox row left that the bus's relay knows of (or no store)."""
        relay = self.bus.relay
        return relay is None or relay.idle

    def _settled(self) -> bool:
        return (
            not self.recorder.active
            and not self.bus.pending_requests
            and not self._pending()
            and self._relay_idle()
        )

    def _next_due(self) -> float | None:
        assert isinstance(self.clock, VirtualClock)
        dues = [p.due for p in self._pending() if p.due is not None]
        timer = self.clock.next_deadline()
        if timer is not None:
            dues.append(timer)
        return min(dues) if dues else None

    async def _quiesce(self, deadline: float, done: Callable[[], bool] | None, what: str) -> bool:
        """Let the bus run until nothing more happens at this instant: no message ready,
        none between consumer and handler, every running handler waiting on a request.
        True as soon as ``done()`` holds."""
        rec = self.recorder
        last: tuple[int, ...] = ()
        stable = unchanged = 0
        while True:
            if done is not None and done():
                return True
            ready = held = 0
            for p in self._pending():
                if p.state == "held":
                    held += 1
                elif p.state != "delayed":
                    ready += 1
            holding = sum(1 for c in rec.active if not c.lost)
            blocked = rec.blocked()
            state = (rec.activity, ready, held, len(rec.active), self.bus.pending_requests)
            idle = ready == 0 and held <= holding and blocked and self._relay_idle()
            unchanged = unchanged + 1 if state == last else 0
            stable = stable + 1 if idle and state == last else 0
            if stable >= 3:
                return False
            last = state
            if time.monotonic() > deadline:
                raise self._not_settled(what)
            if len(rec.calls) - self._first_call > self.max_calls:
                raise self._not_settled(
                    what, f"after {self.max_calls} handler calls: do handlers publish in a loop?"
                )
            if unchanged > 2 and not idle:
                await anyio.sleep(0.001)  # a handler works on something outside the bus
            else:
                await anyio.lowlevel.checkpoint()

    async def _drive(
        self,
        *,
        done: Callable[[], bool] | None,
        what: str,
        until: float | None = None,
        timeout: float | None = None,
    ) -> None:
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        transport = self.bus.transport
        deadline = time.monotonic() + (timeout or self.settle_timeout)
        self._first_call = len(self.recorder.calls)
        while True:
            if await self._quiesce(deadline, done, what):
                return
            if done is None and until is None and self._settled():
                return
            due = self._next_due()
            if until is not None and (due is None or due > until):
                clock.advance_to(until)
                transport.wake_due()  # type: ignore[attr-defined]
                await self._quiesce(deadline, done, what)
                return
            if due is None:
                raise self._not_settled(what, "and no timer is left that could move it on")
            clock.advance_to(due)
            transport.wake_due()  # type: ignore[attr-defined]

    def _not_settled(self, what: str, why: str = "") -> NotSettled:
        if self.virtual:
            pending: list[Pending] | None = self._pending()
            assert isinstance(self.clock, VirtualClock)
            timers: list[object] = list(self.clock.timers())
            when = f"at virtual t={self.now:g}s "
        else:
            pending, timers, when = None, [], ""
        text = describe_pending(self.recorder, pending, self.bus.pending_requests, self.now, timers)
        text += _relay_note(self.bus)
        why = f" {why}" if why else ""
        return NotSettled(
            f"TestBus.{what} did not finish within {self.settle_timeout:g}s of real time"
            f"{why}; still pending {when}:\n{text}"
        )

    # -- running on a real broker -------------------------------------------------------

    async def _settle_real(self, timeout: float) -> None:
        rec = self.recorder
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        stuck_since: float | None = None
        last: tuple[int, int, int, bool] | None = None
        while True:
            owed = rec.owed()
            relaying = not self._relay_idle()
            busy = bool(rec.active or owed or self.bus.pending_requests or relaying)
            state = (rec.activity, len(owed), len(rec.active), relaying)
            now = time.monotonic()
            if state != last:
                quiet_since = stuck_since = None
            last = state
            if not busy:
                quiet_since = quiet_since or now
                if now - quiet_since >= QUIET:
                    return
            elif owed and not rec.active:
                # A message that cannot be decoded goes to the dead letters without a
                # handler call: look there before waiting for it any longer.
                stuck_since = stuck_since or now
                if now - stuck_since >= 0.5:
                    await self._find_undecodable(owed)
                    stuck_since = now
            if now > deadline:
                raise NotSettled(
                    f"TestBus.settle() on {redact(self.url)} did not finish within "
                    f"{timeout:g}s; still pending:\n"
                    + describe_pending(rec, None, self.bus.pending_requests, self.now)
                    + _relay_note(self.bus)
                )
            await anyio.sleep(0.005)

    async def _find_undecodable(self, owed: list[tuple[str, str, str]]) -> None:
        for topic, group in {(t, g) for t, g, _ in owed}:
            ids = {m for t, g, m in owed if (t, g) == (topic, group)}
            async for letter in self.bus.dead_letters(topic, group=group):
                if letter.message_id in ids and letter.reason == "undecodable":
                    self.recorder.settle_owed(topic, group, letter.message_id)


def _relay_note(bus: RecordingBus) -> str:
    relay = bus.relay
    if relay is None or relay.idle:
        return ""
    return (
        "\n  the outbox relay: committed rows not yet sent (a store that does not answer, "
        "or a broker that does not confirm?)"
    )


__all__ = ["ENV_URL", "NotSettled", "TestBus", "configure", "default_url"]

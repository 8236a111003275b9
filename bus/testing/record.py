"""What a TestBus saw: every message published through it (by the test or by a handler)
and every call of a handler, in order, and the bookkeeping ``settle()`` waits on.

A call a test may still expect: every message published to a topic is owed one call
by each group subscribed to it, and every failed call that its ``Retry`` retries is owed
one more. ``owed()`` lists what has not come yet (on a real broker, the only way to know
that something is still on its way).
"""

from __future__ import annotations

import contextvars
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from bus import codec
from bus.message import PAYLOAD_TYPE
from bus.outcome import classify
from bus.service import Subscription

Outcome = Literal["running", "returned", "raised", "dropped"]


@dataclass
class Sent:
    """One message published through the test bus."""

    seq: int
    topic: str
    message_id: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    key: str | None
    payload_type: Any
    by: Call | None
    """The handler call that published it; None for the test itself."""
    relayed: bool = False
    """Sent by the outbox relay (published in a transaction that committed)."""

    @property
    def type_name(self) -> str:
        return self.headers.get(PAYLOAD_TYPE, "?")

    def decode(self, payload_type: Any = None) -> Any:
        return codec.decode(self.body, payload_type or self.payload_type, self.content_type)

    def show(self) -> str:
        try:
            shown = repr(self.decode())
        except Exception:
            shown = repr(self.body[:200])
        return _clip(shown)


@dataclass(eq=False)
class Call:
    """One call of a handler."""

    seq: int
    topic: str
    group: str
    handler: str
    message_id: str
    attempt: int
    payload: Any
    started: float
    """When it started, on the bus's clock (virtual or real monotonic seconds)."""
    ended: float | None = None
    outcome: Outcome = "running"
    error: BaseException | None = None
    waiting: int = 0
    """Requests of this call waiting for their reply now."""
    lost: bool = False
    """Its delivery was lost on purpose (``drop_consumer``): it holds none any more."""

    def show(self) -> str:
        error = f" -> {type(self.error).__name__}: {self.error}" if self.error else ""
        return (
            f"{self.handler} on {self.topic!r} (group {self.group!r}), attempt {self.attempt}, "
            f"{_clip(repr(self.payload))}: {self.outcome}{error}"
        )


current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "bus_testing_call", default=None
)


@dataclass
class Recorder:
    """The log of one TestBus."""

    subscribed: dict[str, list[Subscription]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    active: set[Call] = field(default_factory=set)
    activity: int = 0
    """Bumped on every publish and call boundary: unchanged means nothing happened."""
    _expected: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _begun: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _seq: int = 0

    def subscribe(self, sub: Subscription) -> None:
        self.subscribed.setdefault(sub.topic, []).append(sub)

    def _next(self) -> int:
        self._seq += 1
        self.activity += 1
        return self._seq

    def published(self, sent: Sent) -> None:
        self.sent.append(sent)
        for sub in self.subscribed.get(sent.topic, ()):
            if not sub.reply:
                self._expected[(sent.topic, sub.group, sent.message_id)] += 1

    def begin(
        self, sub: Subscription, message_id: str, attempt: int, payload: Any, now: float
    ) -> Call:
        call = Call(
            seq=self._next(),
            topic=sub.topic,
            group=sub.group,
            handler=sub.name.rsplit("<locals>.", 1)[-1],
            message_id=message_id,
            attempt=attempt,
            payload=payload,
            started=now,
        )
        self.calls.append(call)
        self.active.add(call)
        if not sub.reply:
            self._begun[(sub.topic, sub.group, message_id)] += 1
        return call

    def end(
        self, sub: Subscription, call: Call, error: BaseException | None, now: float, lost: bool
    ) -> None:
        self.activity += 1
        self.active.discard(call)
        call.ended = now
        call.error = error
        call.outcome = "dropped" if lost else "raised" if error is not None else "returned"
        if sub.reply:
            return
        key = (sub.topic, sub.group, call.message_id)
        if lost:
            self._expected[key] += 1  # the broker hands it out again
        elif (
            isinstance(error, Exception)
            and classify(error) == "failed"
            and sub.retry.delay_after(call.attempt, error) is not None
        ):
            self._expected[key] += 1

    def owed(self) -> list[tuple[str, str, str]]:
        """(topic, group, message id) of calls still to come."""
        return [k for k, n in self._expected.items() if self._begun[k] < n]

    def settle_owed(self, topic: str, group: str, message_id: str) -> None:
        """Stop waiting for a call of this message (found dead-lettered undecoded)."""
        key = (topic, group, message_id)
        self._begun[key] = max(self._begun[key], self._expected[key])

    def call_of(self, message_id: str | None) -> Call | None:
        """The last call that handled ``message_id`` (a relayed message's causation)."""
        if message_id:
            for call in reversed(self.calls):
                if call.message_id == message_id:
                    return call
        return None

    def payload_type(self, topic: str, name: str) -> Any:
        """The type named ``name`` (a payload-type header) as a handler of ``topic``, or
        any handler or earlier publish, knows it; ``Any`` (plain JSON values) if none."""
        subs = self.subscribed.get(topic, [])
        subs = subs + [s for t, more in self.subscribed.items() if t != topic for s in more]
        for sub in subs:
            if getattr(sub.payload_type, "__qualname__", None) == name:
                return sub.payload_type
        for sent in reversed(self.sent):
            if sent.type_name == name and sent.payload_type is not Any:
                return sent.payload_type
        return bytes if name == "bytes" else Any

    def blocked(self) -> bool:
        """Every running call waits on the bus (a request): none works on anything else."""
        return all(call.waiting > 0 for call in self.active)

    def summary(self, exclude: str | None = None) -> str:
        """What was published, topic by topic, for a failure message."""
        counts = Counter(s.topic for s in self.sent if s.topic != exclude)
        if not counts:
            return "nothing else was published"
        lines = ["published meanwhile:"]
        for topic, n in counts.items():
            first = next(s for s in self.sent if s.topic == topic)
            lines.append(f"  {topic!r}: {n} message(s), first {first.show()}")
        return "\n".join(lines)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["Call", "Recorder", "Sent", "current_call"]

"""Failure texts of the test kit: what a helper's result was taken from, what is still
pending when ``settle()`` gives up, and the explanation pytest shows when an assertion
on a helper's result fails (``bus.testing.plugin``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus.testing.probe import Pending
from bus.testing.record import Call, Recorder, _clip


class NotSettled(AssertionError):
    """``settle()``, ``advance()`` or ``request()`` could not finish: the text says what
    is still pending."""


class Observed(list[Any]):
    """A helper's result: a plain list, plus what it was taken from, for the failure
    explanation (``context``)."""

    context: str = ""

    def __init__(self, items: Sequence[Any], context: str) -> None:
        super().__init__(items)
        self.context = context


def explain(op: str, left: object, right: object) -> list[str] | None:
    """pytest's explanation of ``left == right`` when either side is an Observed."""
    observed = left if isinstance(left, Observed) else right
    if op != "==" or not isinstance(observed, Observed):
        return None
    other = right if observed is left else left
    if not isinstance(other, Sequence) or isinstance(other, str | bytes):
        return None
    head = f"{_clip(repr(left), 80)} == {_clip(repr(right), 80)}"
    lines = [head, *observed.context.splitlines(), f"got {len(observed)}, expected {len(other)}:"]
    for i in range(max(len(observed), len(other))):
        got = repr(observed[i]) if i < len(observed) else "(nothing)"
        want = repr(other[i]) if i < len(other) else "(nothing)"
        mark = "  " if got == want else "! "
        lines.append(f"{mark}[{i}] got      {_clip(got)}")
        if got != want:
            lines.append(f"{mark}[{i}] expected {_clip(want)}")
    return lines


def describe_pending(
    recorder: Recorder,
    pending: list[Pending] | None,
    pending_requests: int,
    now: float,
    timers: Sequence[object] = (),
) -> str:
    """Everything not finished, one line each."""
    lines: list[str] = []
    for call in sorted(recorder.active, key=lambda c: c.seq):
        lines.append(f"  handler still running ({_since(call, now)}): {call.show()}")
        if call.waiting:
            lines.append(f"    waiting on {call.waiting} request(s) of its own")
    for p in pending or ():
        if p.state == "held":
            continue  # shown as a running handler
        if p.state == "reply":
            lines.append(f"  a reply not yet read in inbox {p.topic}")
        elif p.state == "delayed":
            due = f"due at t={p.due:g}s" if p.due is not None else "delayed"
            lines.append(f"  retry of {p.message.id} on {p.topic!r} for {p.group!r}, {due}")
        else:
            lines.append(
                f"  message {p.message.id} ready on {p.topic!r} for group {p.group!r} "
                "(no consumer takes it)"
            )
    if pending_requests:
        lines.append(f"  {pending_requests} request(s) waiting for a reply")
    if pending is None:  # a real broker: only what the test bus itself can tell
        for topic, group, message_id in recorder.owed():
            lines.append(f"  message {message_id} on {topic!r} not yet handled by group {group!r}")
    if timers:
        lines.append(f"  clock timers: {', '.join(map(repr, list(timers)[:5]))}")
    return "\n".join(lines) or "  nothing (it settled meanwhile?)"


def _since(call: Call, now: float) -> str:
    return f"since t={call.started:g}s, now t={now:g}s"


__all__ = ["NotSettled", "Observed", "describe_pending", "explain"]

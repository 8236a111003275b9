"""Faults a test arms on a ``TestBus``: each fires on the next N matching operations,
then disarms itself. ``TestBus.fail``, ``fail_publish``, ``time_out_requests`` and
``drop_consumer`` arm them; the recording bus and the handler wrappers consume them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus import names
from bus.errors import ConfigError


@dataclass
class Armed:
    """One armed fault: on ``topic`` (for ``group``, or any group when None), ``times``
    more times."""

    topic: str
    group: str | None
    times: int
    error: BaseException | type[BaseException] | None = None

    def matches(self, topic: str, group: str | None) -> bool:
        return self.times > 0 and self.topic == topic and self.group in (None, group)


def check_times(times: int) -> int:
    if not isinstance(times, int) or times < 1:
        raise ConfigError(f"times={times!r}: a fault fires on the next N calls, N >= 1")
    return times


class Faults:
    """The armed faults of one TestBus, by kind."""

    def __init__(self) -> None:
        self.handler: list[Armed] = []
        self.publish: list[Armed] = []
        self.request: list[Armed] = []
        self.drop: list[Armed] = []

    def arm(
        self,
        kind: list[Armed],
        topic: str,
        group: str | None,
        times: int,
        error: BaseException | type[BaseException] | None = None,
    ) -> None:
        names.check_topic(topic)
        if group is not None:
            names.check_group(group)
        kind.append(Armed(topic, group, check_times(times), error))

    @staticmethod
    def take(kind: list[Armed], topic: str, group: str | None = None) -> Armed | None:
        """The first armed fault matching, with one firing used up; None if none."""
        for armed in kind:
            if armed.matches(topic, group):
                armed.times -= 1
                return armed
        return None

    def left(self) -> list[str]:
        """Faults armed and never fired (a test that expected them is probably wrong)."""
        out = []
        for label, kind in (
            ("fail", self.handler),
            ("fail_publish", self.publish),
            ("time_out_requests", self.request),
            ("drop_consumer", self.drop),
        ):
            for armed in kind:
                if armed.times > 0:
                    where = f" group {armed.group!r}" if armed.group else ""
                    out.append(f"{label}({armed.topic!r}{where}): {armed.times} left")
        return out


__all__ = ["Armed", "Faults"]

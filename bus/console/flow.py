"""Flow: messages handled, failed, retried and dead-lettered per second, per topic and
group, over the last minutes, from the running totals that presence announcements carry.

Each instance reports totals since it started; the rate is the rise between two of its
announcements spread evenly over the time between them, summed over instances into
fixed buckets of ``step`` seconds. An instance's first announcement only sets its
baseline: what it counted before the console listened is in the totals, not the rates.
"""

from __future__ import annotations

import math
from typing import Any

from bus.presence import COUNTED, Count

Key = tuple[str, str]  # (topic, group)


class Flow:
    def __init__(self, step: float = 2.0, window: float = 300.0) -> None:
        if step <= 0 or window < step:
            raise ValueError("step must be positive and window at least one step")
        self.step = step
        self.buckets = int(window // step)
        # (topic, group) -> kind -> bucket index -> messages
        self._rises: dict[Key, dict[str, dict[int, float]]] = {}
        # instance -> (topic, group) -> its last totals, and when they were heard
        self._last: dict[str, tuple[float, dict[Key, Count]]] = {}

    def heard(self, instance: str, counts: list[Count], at: float) -> None:
        """An announcement of ``instance`` heard at ``at`` (monotonic seconds)."""
        previous = self._last.get(instance)
        now = {(c.topic, c.group): c for c in counts}
        self._last[instance] = (at, now)
        if previous is None:
            return
        since, before = previous
        for key, count in now.items():
            old = before.get(key)
            for kind in COUNTED:
                value = getattr(count, kind)
                rise = value - (getattr(old, kind) if old else 0)
                if rise < 0:  # cannot happen within one instance; count it as a restart
                    rise = value
                if rise:
                    self._spread(key, kind, rise, since, at)

    def forget(self, instance: str) -> None:
        """Drop an instance's totals (it stopped long ago)."""
        self._last.pop(instance, None)

    def _spread(self, key: Key, kind: str, rise: float, start: float, end: float) -> None:
        series = self._rises.setdefault(key, {}).setdefault(kind, {})
        start = max(start, end - self.buckets * self.step)
        if end <= start:
            index = math.floor(end / self.step)
            series[index] = series.get(index, 0.0) + rise
            return
        span = end - start
        t = start
        while t < end:
            index = math.floor(t / self.step)
            upto = min(end, (index + 1) * self.step)
            series[index] = series.get(index, 0.0) + rise * (upto - t) / span
            t = upto

    def totals(self) -> dict[Key, dict[str, int]]:
        """Per (topic, group): the sum of every instance's latest totals."""
        out: dict[Key, dict[str, int]] = {}
        for _, counts in self._last.values():
            for key, count in counts.items():
                sums = out.setdefault(key, dict.fromkeys(COUNTED, 0))
                for kind in COUNTED:
                    sums[kind] += getattr(count, kind)
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """The charts' data: per (topic, group), each kind's rate per second by bucket,
        oldest first, ending with the bucket holding ``now`` (``[]`` when all are zero)."""
        last = math.floor(now / self.step)
        first = last - self.buckets + 1
        totals = self.totals()
        series = []
        for key in sorted(set(totals) | set(self._rises)):
            kinds = self._rises.get(key, {})
            rates: dict[str, list[float]] = {}
            for kind in COUNTED:
                buckets = kinds.get(kind, {})
                for index in [i for i in buckets if i < first]:  # fell out of the window
                    del buckets[index]
                values = [round(buckets.get(i, 0.0) / self.step, 3) for i in range(first, last + 1)]
                rates[kind] = values if any(values) else []  # [] for all zero: less to send
            series.append(
                {
                    "topic": key[0],
                    "group": key[1],
                    "totals": totals.get(key, dict.fromkeys(COUNTED, 0)),
                    "rates": rates,
                }
            )
        return {
            "step": self.step,
            "buckets": self.buckets,
            "kinds": list(COUNTED),
            "series": series,
        }

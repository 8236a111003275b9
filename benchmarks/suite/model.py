"""The payload, the handlers and one measured point (every round of every side, and the
median of the per-round ratios with its spread): shared by every side."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from typing import Any

import msgspec


class Payload(msgspec.Struct):
    seq: int
    sent: float
    fail: bool
    pad: str


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Payload).decode


def payloads(n: int, size: int, fail_every: int = 0, start: int = 0) -> list[Payload]:
    """``n`` payloads whose JSON is ``size`` bytes (at least ~50); every ``fail_every``-th
    one (0: none) is marked to fail."""
    base = len(encode(Payload(start + n, 0.0, False, "")))
    pad = "x" * max(0, size - base)
    return [
        Payload(start + i, 0.0, bool(fail_every and i % fail_every == fail_every - 1), pad)
        for i in range(n)
    ]


WARM = Payload(-1, 0.0, False, "")


class Failure(Exception):
    """What a failing handler raises."""


async def noop(p: Payload) -> None:
    """The CPU-bound case: nothing but an await."""
    if p.fail:
        raise Failure(p.seq)
    await asyncio.sleep(0)


async def io_1ms(p: Payload) -> None:
    """The I/O-bound case: a 1 ms sleep."""
    await asyncio.sleep(0.001)
    if p.fail:
        raise Failure(p.seq)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and (from 4 values up) the quartiles of ``values``."""
    out = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out["q1"], out["q3"] = q1, q3
    return out


@dataclass
class Result:
    """One measured point: each side's value in every round (None where a side sat a
    round out), in one unit. ``base`` is the side the others are divided by."""

    scenario: str
    adapter: str
    case: str
    param: float | str
    unit: str
    rounds: dict[str, list[float | None]]
    names: dict[str, str]
    lower_is_better: bool = False
    base: str = "raw"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, role: str) -> float | None:
        """The median of ``role``'s rounds."""
        got = [v for v in self.rounds.get(role, []) if v is not None]
        return statistics.median(got) if got else None

    def ratios(self, role: str) -> list[float]:
        """``role`` over the base, round by round (base over role when lower is better)."""
        out = []
        for mine, base in zip(
            self.rounds.get(role, []), self.rounds.get(self.base, []), strict=False
        ):
            if mine and base:
                out.append(base / mine if self.lower_is_better else mine / base)
        return out

    def ratio(self, role: str = "bus") -> dict[str, float] | None:
        got = self.ratios(role)
        return spread(got) if got else None

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "adapter": self.adapter,
            "case": self.case,
            "param": self.param,
            "unit": self.unit,
            "names": self.names,
            "base": self.base,
            "lower_is_better": self.lower_is_better,
            "rounds": self.rounds,
            "medians": {role: self.value(role) for role in self.rounds},
            "ratios": {
                role: {"rounds": self.ratios(role), **(self.ratio(role) or {})}
                for role in self.rounds
                if role != self.base
            },
            "note": self.note,
            "extra": self.extra,
        }

"""The payload, the handlers and one measured result: shared by every side."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
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


@dataclass
class Result:
    """One measured point: the bus, the raw client and (optional) a peer, same unit."""

    scenario: str
    adapter: str
    case: str
    param: float | str
    unit: str
    bus: float | None
    raw: float | None
    raw_name: str
    peer: float | None = None
    peer_name: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.bus is None or not self.raw:
            return None
        if self.unit == "ms":  # lower is better: raw over bus
            return self.raw / self.bus if self.bus else None
        return self.bus / self.raw

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out

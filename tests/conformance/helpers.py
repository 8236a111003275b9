"""What the conformance cases share: payload types, names, and waiting on a condition."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import anyio
import msgspec

import bus

DEADLINE = 20.0  # seconds any one condition may take on a slow shared machine


class Item(msgspec.Struct):
    n: int
    text: str = ""


class Marker(msgspec.Struct):
    label: str


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Return as soon as ``condition()`` holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


class Clock:
    """Monotonic timestamps of events, by label."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def mark(self, label: str) -> None:
        self.times.setdefault(label, []).append(time.monotonic())


async def letters_of(
    b: bus.Bus, topic: str, group: str, count: int, timeout: float = DEADLINE
) -> list[bus.DeadLetter]:
    """The dead letters of ``group`` on ``topic`` once there are at least ``count``."""
    with anyio.fail_after(timeout):
        while True:
            letters = [d async for d in b.dead_letters(topic, group=group)]
            if len(letters) >= count:
                return letters
            await anyio.sleep(0.02)

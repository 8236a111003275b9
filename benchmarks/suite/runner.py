"""The loop: for each adapter, build its sides and run every scenario, one at a time."""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

from benchmarks.suite.brokers import RABBIT_URL, Brokers, forget_memory
from benchmarks.suite.model import Result
from benchmarks.suite.plan import Plan
from benchmarks.suite.progress import Progress
from benchmarks.suite.scenarios import SCENARIOS, Context
from benchmarks.suite.sides_bus import BusSide


def sides(adapter: str, brokers: Brokers) -> tuple[BusSide, Any]:
    if adapter == "memory":
        from benchmarks.suite.sides_memory import MemoryRaw

        return BusSide(lambda: brokers.bus_url("memory"), True, forget_memory), MemoryRaw()
    url = brokers.bus_url(adapter)
    if adapter == "rabbitmq":
        from benchmarks.suite.sides_rabbit import RabbitRaw

        return BusSide(lambda: url, True, None), RabbitRaw(RABBIT_URL, brokers.prefix)
    from benchmarks.suite.sides_kafka import KafkaRaw

    assert brokers.tansu is not None
    return BusSide(lambda: url, False, None), KafkaRaw(brokers.tansu.bootstrap)


def peer_for(adapter: str, brokers: Brokers, notes: list[str]) -> Any | None:
    if adapter == "memory":
        return None
    try:
        from benchmarks.suite import sides_faststream
    except ImportError as exc:
        notes.append(
            f"--peers: FastStream is not installed ({exc}); "
            "pip install 'faststream[rabbit,kafka]' to compare with it"
        )
        return None
    if adapter == "rabbitmq":
        return sides_faststream.FastStreamRabbit(RABBIT_URL, brokers.prefix)
    assert brokers.tansu is not None
    return sides_faststream.FastStreamKafka(brokers.tansu.bootstrap)


async def run(
    adapters: list[str], plan: Plan, brokers: Brokers, only: str | None, peers: bool,
    progress: Progress, notes: list[str], errors: list[str], timings: dict[str, float],
) -> list[Result]:  # fmt: skip
    results: list[Result] = []
    for adapter in adapters:
        bus_side, raw = sides(adapter, brokers)
        peer = peer_for(adapter, brokers, notes) if peers else None
        ctx = Context(adapter, plan, bus_side, raw, peer, progress.step, notes)
        for name, scenario in SCENARIOS.items():
            if only is not None and name != only:
                continue
            progress.show(f"{adapter} {name}...")
            started = time.monotonic()
            try:
                results += await scenario(ctx)
            except Exception as exc:
                errors.append(f"{adapter} {name}: {type(exc).__name__}: {exc}")
                print(f"\n{adapter} {name} failed:", file=sys.stderr)
                traceback.print_exc()
            timings[f"{adapter} {name}"] = round(time.monotonic() - started, 1)
    return results

"""The loop: for each adapter, build its sides and run the chosen scenarios, one at a
time."""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from benchmarks.suite import profiling
from benchmarks.suite.brokers import RABBIT_URL, Brokers, forget_memory
from benchmarks.suite.model import Result
from benchmarks.suite.plan import Plan
from benchmarks.suite.progress import Progress
from benchmarks.suite.scenarios import SCENARIOS, Context
from benchmarks.suite.sides_bus import BusSide


def sides(adapter: str, brokers: Brokers) -> dict[str, Any]:
    """The raw side first, then the bus: round 1 starts with raw, round 2 with the bus."""
    if adapter == "memory":
        from benchmarks.suite.sides_memory import MemoryRaw

        bus_side = BusSide(lambda: brokers.bus_url("memory"), True, forget_memory)
        return {"raw": MemoryRaw(), "bus": bus_side}
    url = brokers.bus_url(adapter)
    if adapter == "rabbitmq":
        from benchmarks.suite.sides_rabbit import RabbitRaw

        return {
            "raw": RabbitRaw(RABBIT_URL, brokers.prefix),
            "bus": BusSide(lambda: url, True, None),
        }
    from benchmarks.suite.sides_kafka import KafkaRaw

    assert brokers.tansu is not None
    return {"raw": KafkaRaw(brokers.tansu.bootstrap), "bus": BusSide(lambda: url, False, None)}


def peers(adapter: str, brokers: Brokers, notes: list[str]) -> dict[str, Any]:
    if adapter == "memory":
        return {}
    try:
        from benchmarks.suite import sides_faststream
    except ImportError as exc:
        notes.append(
            f"--peers: FastStream is not installed ({exc}); "
            "pip install 'faststream[rabbit,kafka]' to compare with it"
        )
        return {}
    if adapter == "rabbitmq":
        return {"faststream": sides_faststream.FastStreamRabbit(RABBIT_URL, brokers.prefix)}
    assert brokers.tansu is not None
    return {
        "faststream": sides_faststream.FastStreamKafka(brokers.tansu.bootstrap),
        "faststream_ack_first": sides_faststream.FastStreamKafka(brokers.tansu.bootstrap, True),
    }


async def run(
    adapters: list[str], plan: Plan, brokers: Brokers, scenarios: list[str], with_peers: bool,
    progress: Progress, notes: list[str], errors: list[str], timings: dict[str, dict[str, float]],
    out: Any,
) -> list[Result]:  # fmt: skip
    results: list[Result] = []
    for adapter in adapters:
        roles = sides(adapter, brokers)
        if with_peers:
            roles |= peers(adapter, brokers, notes)
        ctx = Context(adapter, plan, roles, progress.step, notes)
        for name in scenarios:
            progress.show(f"{adapter} {name}")
            started = time.monotonic()
            try:
                results += await SCENARIOS[name](ctx)
            except Exception as exc:
                errors.append(f"{adapter} {name}: {type(exc).__name__}: {exc}")
                print(f"\n{adapter} {name} failed:", file=sys.stderr)
                traceback.print_exc()
            timings[f"{adapter} {name}"] = {
                "seconds": round(time.monotonic() - started, 1),
                "load_average_1min_at_end": os.getloadavg()[0],
            }
            written = profiling.flush(out, f"profile-{adapter}-{name}")
            if written is not None:
                notes.append(f"profile of the bus side of {adapter} {name}: {written.name}")
    return results

"""``python -m benchmarks``: the scalability suite (see benchmarks/RESULTS.md).

python -m benchmarks [--quick] [--adapters memory,rabbitmq,kafka] [--peers]
                     [--only SCENARIO] [--no-plots] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from benchmarks.suite import plots, report, runner
from benchmarks.suite.brokers import Brokers
from benchmarks.suite.plan import ALL, FULL, QUICK
from benchmarks.suite.progress import Progress
from benchmarks.suite.scenarios import SCENARIOS, points

RESULTS = Path(__file__).resolve().parent.parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Scalability of the bus, side by side with the raw clients.",
    )
    parser.add_argument("--quick", action="store_true", help="every scenario, small: < 1 min")
    parser.add_argument("--adapters", default=",".join(ALL), help="comma-separated: %(default)s")
    parser.add_argument("--peers", action="store_true", help="add FastStream where it fits")
    parser.add_argument("--only", choices=sorted(SCENARIOS), help="run one scenario")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    args.adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    unknown = set(args.adapters) - set(ALL)
    if unknown:
        parser.error(f"unknown adapter(s) {sorted(unknown)}; known: {', '.join(ALL)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # tansu refuses idempotent producers; aiokafka logs each refusal as an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = QUICK if args.quick else FULL
    draw = not (args.quick or args.no_plots)
    if draw:
        plots.require()
    notes: list[str] = []
    if args.quick:
        notes.append("--quick: small sizes (one message size, fewer levels); plots skipped")
    notes += [n for n in plan_notes(plan, args.adapters)]
    errors: list[str] = []
    timings: dict[str, float] = {}
    total = sum(points(plan, a, args.only) for a in args.adapters)
    progress = Progress(total)
    brokers = Brokers()
    started = time.monotonic()
    try:
        brokers.start(args.adapters)
        results = asyncio.run(
            runner.run(
                args.adapters,
                plan,
                brokers,
                args.only,
                args.peers,
                progress,
                notes,
                errors,
                timings,
            )
        )
    finally:
        progress.close()
        brokers.stop()
        if "rabbitmq" in args.adapters:
            try:
                brokers.cleanup_rabbit()
            except Exception as exc:  # the results still count
                print(f"cleaning up RabbitMQ failed: {exc}", file=sys.stderr)
    duration = time.monotonic() - started
    meta = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "adapters": args.adapters,
        "only": args.only,
        "peers": args.peers,
        "duration_s": round(duration, 1),
        "scenario_seconds": timings,
    }
    json_path, md_path = report.write(args.out, results, meta, notes, errors)
    print(report.markdown(results, notes, errors))
    slowest = sorted(timings.items(), key=lambda kv: -kv[1])[:5]
    print("slowest: " + ", ".join(f"{k} {v:.0f}s" for k, v in slowest))
    print(f"{len(results)} results in {duration:.0f}s: {json_path} and {md_path}")
    if draw:
        for path in plots.draw(results, args.out, json_path.stem):
            print(f"plot: {path}")
    return 1 if errors else 0


def plan_notes(plan: object, adapters: list[str]) -> list[str]:
    out = []
    topics = getattr(plan, "topics", {})
    for adapter in adapters:
        top = max(topics.get(adapter, (0,)))
        if top < 1000:
            out.append(
                f"topics on {adapter}: up to {top}, not 1,000 (scaled down: one consumer "
                "group per topic is too slow to set up on this broker and machine)"
            )
    return out

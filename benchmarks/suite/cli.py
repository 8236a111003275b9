"""``python -m benchmarks``: the one benchmark harness (see benchmarks/RESULTS.md).

python -m benchmarks [--quick] [--adapters memory,rabbitmq,kafka]
                     [--scenarios publish_one,consume,...|default|all] [--rounds N]
                     [--peers] [--profile] [--no-plots] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from benchmarks.suite import plots, profiling, report, runner
from benchmarks.suite.brokers import Brokers
from benchmarks.suite.plan import ALL, FULL, QUICK
from benchmarks.suite.progress import Progress
from benchmarks.suite.scenarios import DEFAULT, SCENARIOS, steps

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _list(value: str, known: tuple[str, ...] | list[str], what: str,
          parser: argparse.ArgumentParser) -> list[str]:  # fmt: skip
    got = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in got if v not in known]
    if unknown:
        parser.error(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return got


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The bus side by side with the raw clients: median of per-round ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round: < 1 min")
    parser.add_argument("--adapters", default=",".join(ALL), help="comma-separated: %(default)s")
    parser.add_argument(
        "--scenarios",
        default="default",
        help=f"comma-separated, 'default' ({','.join(DEFAULT)}) or 'all' "
        f"(adds {','.join(s for s in SCENARIOS if s not in DEFAULT)})",
    )
    parser.add_argument("--rounds", type=int, help="rounds per point (default 5; quick 1)")
    parser.add_argument("--peers", action="store_true", help="add FastStream where it fits")
    parser.add_argument(
        "--profile", action="store_true",
        help="pyinstrument over the bus side's measured windows; profile-*.txt/html in --out",
    )  # fmt: skip
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    args.adapters = _list(args.adapters, ALL, "adapter(s)", parser)
    if args.scenarios == "default":
        args.scenarios = list(DEFAULT)
    elif args.scenarios == "all":
        args.scenarios = list(SCENARIOS)
    else:
        args.scenarios = _list(args.scenarios, list(SCENARIOS), "scenario(s)", parser)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # tansu refuses idempotent producers; aiokafka logs each refusal as an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    plan = (QUICK if args.quick else FULL).with_rounds(args.rounds)
    draw = not (args.quick or args.no_plots)
    if draw:
        plots.require()
    if args.profile:
        profiling.enable()
    notes: list[str] = []
    if args.quick:
        notes.append("--quick: small sizes, one round: a smoke run, not a measurement")
    errors: list[str] = []
    timings: dict[str, dict[str, float]] = {}
    sides = 4 if args.peers else 2
    total = sum(steps(plan, a, s, sides) for a in args.adapters for s in args.scenarios)
    progress = Progress(total)
    brokers = Brokers()
    started = time.monotonic()
    load_start = os.getloadavg()
    # Other work may change the checkout while a long run goes on: record both ends.
    commit_start = report.commit()
    try:
        brokers.start(args.adapters)
        results = asyncio.run(
            runner.run(
                args.adapters, plan, brokers, args.scenarios, args.peers, progress, notes,
                errors, timings, args.out,
            )
        )  # fmt: skip
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
        "rounds": plan.rounds,
        "adapters": args.adapters,
        "scenarios_run": args.scenarios,
        "peers": args.peers,
        "duration_s": round(duration, 1),
        "commit_at_start": commit_start,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "scenario_seconds": timings,
    }
    json_path, md_path = report.write(args.out, results, meta, notes, errors)
    print(report.markdown(results, notes, errors))
    slowest = sorted(timings.items(), key=lambda kv: -kv[1]["seconds"])[:5]
    print("slowest: " + ", ".join(f"{k} {v['seconds']:.0f}s" for k, v in slowest))
    print(f"{len(results)} results in {duration:.0f}s: {json_path} and {md_path}")
    if draw:
        for path in plots.draw(results, args.out, json_path.stem):
            print(f"plot: {path}")
    return 1 if errors else 0

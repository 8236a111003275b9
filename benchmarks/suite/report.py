"""The run's record: JSON (every round of every side) and Markdown tables, one per
scenario, each row the median of the per-round ratios with its spread."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.suite.model import Result

TITLES = {
    "publish_one": "Publish, one at a time from many concurrent callers (confirms / acks=all)",
    "publish_batch": "Publish in batches (bus: publish_many; confirms / acks=all)",
    "consume": "Consume (decode, no-op handler, ack/commit after it; default concurrency)",
    "concurrency": "1 ms handler, by handler concurrency",
    "request_reply": "Request-reply",
    "latency": "End-to-end latency at a fixed offered rate (ratio: raw over bus; higher is better)",
    "failing": "Healthy throughput beside a failing handler (design comparison)",
    "telemetry": "Telemetry: the bus with the OpenTelemetry SDK over the bus without it",
    "sizes": "By message size",
    "topics": "Topics and groups, same total load (no-op handler, 64 in flight in all)",
    "partitions": "Kafka partitions (1 ms handler, concurrency 64)",
    "processes": "Consumer processes (bus side only; 1 ms handler, concurrency 16 each)",
    "outbox": "Outbox and inbox, RabbitMQ with PostgreSQL (latency ratios: raw over bus)",
}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    return info


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return ""


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _ratio(r: Result, role: str) -> tuple[str, str, str]:
    got = r.ratio(role)
    if got is None:
        return "-", "-", "-"
    iqr = f"{got['q1']:.2f}-{got['q3']:.2f}" if "q1" in got else "-"
    return f"{got['median']:.2f}", f"{got['min']:.2f}-{got['max']:.2f}", iqr


def markdown(results: list[Result], notes: list[str], errors: list[str]) -> str:
    lines: list[str] = []
    for scenario, title in TITLES.items():
        rows = [r for r in results if r.scenario == scenario]
        if not rows:
            continue
        others = sorted({role for r in rows for role in r.rounds} - {"raw", "bus"})
        head = ("| adapter | case | unit | rounds | bus | raw | raw side | bus / raw (median) "
                "| min-max | IQR |")  # fmt: skip
        rule = "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        for role in others:
            name = next(r.names[role] for r in rows if role in r.names)
            head += f" {name} | {name} / raw (min-max) |"
            rule += " ---: | ---: |"
        lines += [f"#### {title}", "", head, rule]
        for r in rows:
            med, span, iqr = _ratio(r, "bus")
            count = max(len(v) for v in r.rounds.values())
            line = (
                f"| {r.adapter} | {r.case} | {r.unit} | {count} | {_fmt(r.value('bus'))} | "
                f"{_fmt(r.value('raw'))} | {r.names.get('raw', '-')} | {med} | {span} | {iqr} |"
            )
            for role in others:
                pmed, pspan, _ = _ratio(r, role)
                line += f" {_fmt(r.value(role))} | {pmed} ({pspan}) |"
            lines.append(line)
        notes_here = sorted({r.note for r in rows if r.note})
        lines += ["", *(f"Note: {n}." for n in notes_here), ""] if notes_here else [""]
    if notes:
        lines += ["Notes:", "", *(f"- {n}" for n in notes), ""]
    if errors:
        lines += ["Errors:", "", *(f"- {e}" for e in errors), ""]
    return "\n".join(lines)


def write(
    directory: Path, results: list[Result], meta: dict[str, Any], notes: list[str],
    errors: list[str],
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``run-<UTC time>[-quick].json`` and the same name ``.md``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = directory / f"run-{stamp}{'-quick' if meta.get('quick') else ''}"
    record = {
        **meta,
        "machine": machine(),
        "commit": commit(),  # at the end; "commit_at_start" in meta
        "results": [r.to_json() for r in results],
        "scenarios": sorted({r.scenario for r in results}),
        "notes": notes,
        "errors": errors,
    }
    json_path = base.with_suffix(".json")
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.rename(json_path)
    md_path = base.with_suffix(".md")
    md_path.write_text(
        f"Command: `{meta.get('command', '')}`\n\n" + markdown(results, notes, errors)
    )
    return json_path, md_path

"""The run's record: JSON (every figure) and Markdown tables, one per scenario."""

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
    "publish": "Publish throughput (confirms / acks=all)",
    "consume": "Consume throughput (decode, no-op handler, ack/commit; 64 in flight)",
    "concurrency": "Queue scalability: 1 ms handler, by handler concurrency",
    "processes": "Consumer processes (bus side; 1 ms handler, concurrency 16 each; steady rate)",
    "partitions": "Kafka partitions (1 ms handler, concurrency 64)",
    "topics": "Topics and groups, same total load (no-op handler, 64 in flight in all)",
    "latency": "End-to-end latency at a fixed offered rate (lower is better)",
    "request_reply": "Request-reply",
    "failing": "Healthy throughput beside a failing handler (1 ms handler, concurrency 16)",
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
        return out.stdout.strip()
    except OSError:
        return ""


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def markdown(results: list[Result], notes: list[str], errors: list[str]) -> str:
    peer_name = next((r.peer_name for r in results if r.peer is not None), None)
    lines: list[str] = []
    for scenario, title in TITLES.items():
        rows = [r for r in results if r.scenario == scenario]
        if not rows:
            continue
        head = "| adapter | case | unit | bus | raw | raw client | bus / raw |"
        rule = "| --- | --- | --- | ---: | ---: | --- | ---: |"
        if peer_name:
            head += f" {peer_name} |"
            rule += " ---: |"
        lines += [f"#### {title}", "", head, rule]
        for r in rows:
            ratio = r.ratio
            line = (
                f"| {r.adapter} | {r.case} | {r.unit} | {_fmt(r.bus)} | {_fmt(r.raw)} | "
                f"{r.raw_name if r.raw is not None else '-'} | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} |"
            )
            if peer_name:
                line += f" {_fmt(r.peer)} |"
            lines.append(line)
        lines.append("")
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
        "commit": commit(),
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
    md_path.write_text(markdown(results, notes, errors))
    return json_path, md_path

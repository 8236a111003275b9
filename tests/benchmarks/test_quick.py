"""`python -m benchmarks --quick` runs every default scenario on every adapter, so the
benchmarks never rot: it must exit 0 within its time limit and write a JSON holding every
scenario, each point with the bus side, the base side and their ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.suite.scenarios import DEFAULT

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 180.0  # the run aims at under a minute; a loaded shared machine gets slack


@pytest.mark.slow
def test_quick_run_covers_every_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record_path,) = tmp_path.glob("run-*-quick.json")
    record = json.loads(record_path.read_text())
    assert record["errors"] == []
    assert set(record["scenarios"]) == set(DEFAULT)
    assert set(record["adapters"]) == {"memory", "rabbitmq", "kafka"}
    for result in record["results"]:
        assert result["medians"]["bus"] and result["medians"]["bus"] > 0, result
        assert result["medians"][result["base"]] > 0, result
        assert len(result["ratios"]["bus"]["rounds"]) == record["rounds"], result
    assert (tmp_path / record_path.name.replace(".json", ".md")).exists()


def test_misspelt_scenario_or_adapter_is_refused() -> None:
    """A misspelt scenario or adapter is refused with the known names, before any broker
    is touched."""
    for flag, value in (("--scenarios", "consum"), ("--adapters", "kafak")):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", flag, value],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2
        assert "known:" in done.stderr and value in done.stderr

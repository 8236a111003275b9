"""`python -m benchmarks --quick` runs every scenario on every adapter, so the benchmarks
never rot: it must exit 0 within its time limit and write a JSON holding every scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.suite.scenarios import SCENARIOS

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
    assert set(record["scenarios"]) == set(SCENARIOS)
    assert set(record["adapters"]) == {"memory", "rabbitmq", "kafka"}
    for result in record["results"]:
        assert result["bus"] is not None and result["bus"] > 0, result
    assert (tmp_path / record_path.name.replace(".json", ".md")).exists()

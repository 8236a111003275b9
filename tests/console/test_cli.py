"""``bus console`` as a process: it serves on loopback, makes up a token when
``$BUS_CONSOLE_TOKEN`` is unset (and prints the address that logs in with it), and a
SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_bus_console_serves_until_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BUS_CONSOLE_TOKEN", "BUS_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bus", "console", "--port", "0", "--url", "memory://cli-console"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]  # blocks until printed
        assert lines[0].startswith("console on http://127.0.0.1:"), lines
        assert "watching memory://cli-console" in lines[0]
        found = re.search(r"log in at (http://127\.0\.0\.1:\d+)/#token=(\S+)", lines[1])
        assert found, lines
        address, token = found.groups()
        assert httpx.get(f"{address}/api/services", timeout=10).status_code == 401
        answer = httpx.get(
            f"{address}/api/services", headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.json() == {"broker": "memory://cli-console", "instances": []}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

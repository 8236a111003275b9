"""The CLI driven as a user would: in a subprocess, with clear one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

BUS = [sys.executable, "-m", "bus"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BUS, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "no_such_module:svc"], "cannot import module 'no_such_module'"),
        (["run", "tests.cli.app"], "MODULE:ATTRIBUTE"),
        (["run", "tests.cli.app:nothing"], "has no attribute 'nothing'"),
        (["run", "tests.cli.app:TOPIC"], "is not a bus.Service"),
        (["--url", "nope://x", "publish", "t", "{}"], "unknown broker URL scheme 'nope'"),
        (["--url", "amqp//x", "publish", "t", "{}"], "expected scheme://"),
        (["publish", "t", "{not json"], "not valid JSON"),
        (["request", "t", "{}", "--timeout", "0.2"], "no reply on 't'"),
    ],
)
def test_user_mistakes_are_one_clear_line(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_prints_the_message_id() -> None:
    result = run("publish", "t", '{"n": 1}')
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 32


def test_run_closes_gracefully_on_sigterm() -> None:
    proc = subprocess.Popen(
        [*BUS, "run", "tests.cli.app:service", "--url", "memory://cli"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while "running cli-worker" not in line:
            assert time.monotonic() < deadline, "bus run did not start"
            line = proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "closing gracefully" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_status_takes_url_after_the_command_as_its_docs_show() -> None:
    # memory:// has nobody announcing: an empty survey, but the command line is accepted.
    result = run("status", "--url", "memory://status-cli", "--window", "0.1")
    assert result.returncode == 0, result.stderr
    assert "unrecognized arguments" not in result.stderr


def test_a_bad_presence_interval_is_one_clear_config_error() -> None:
    result = subprocess.run(
        [*BUS, "run", "tests.cli.app:service", "--url", "memory://cli-env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BUS_PRESENCE_INTERVAL": "soon"},
    )
    assert result.returncode == 1
    assert "BUS_PRESENCE_INTERVAL='soon'" in result.stderr
    assert "Traceback" not in result.stderr

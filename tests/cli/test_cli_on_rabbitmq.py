"""The CLI driven as a user would, in subprocesses, against the real RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import bus
from tests.conformance.helpers import unique, wait_until

BUS = [sys.executable, "-m", "bus"]


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BUS, "--url", url, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_dlq_list_show_and_replay_a_real_dead_letter(rabbitmq_url: str) -> None:
    topic, group = unique("t"), unique("g")
    svc = bus.Service(group)
    broken = [True]
    handled: list[bytes] = []

    @svc.subscribe(topic, retry=bus.Retry(attempts=1))
    async def handle(body: bytes) -> None:
        if broken[0]:
            raise bus.Reject("cannot ship to the moon")
        handled.append(body)

    async with bus.Bus(rabbitmq_url, services=[svc]) as b:
        message_id = await b.publish(topic, b'{"order": "o-1"}')
        with anyio.fail_after(20):
            while not [d async for d in b.dead_letters(topic, group=group)]:
                await anyio.sleep(0.02)
        listed = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "list", topic, "--group", group
        )
        assert listed.returncode == 0, listed.stderr
        assert message_id in listed.stdout and "rejected" in listed.stdout
        shown = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "show", topic, "--group", group, "--id", message_id
        )
        assert shown.returncode == 0, shown.stderr
        assert '"bus-dlq-reason": "rejected"' in shown.stdout
        assert "cannot ship to the moon" in shown.stdout
        missing = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "show", topic, "--group", group, "--id", "nope"
        )
        assert missing.returncode == 1 and "no dead letter with id 'nope'" in missing.stderr
        broken[0] = False
        replayed = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "replay", topic, "--group", group
        )
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1 dead letter" in replayed.stdout
        await wait_until(lambda: handled == [b'{"order": "o-1"}'])
    empty = await anyio.to_thread.run_sync(
        cli, rabbitmq_url, "dlq", "list", topic, "--group", group
    )
    assert "no dead letters" in empty.stdout


async def test_dlq_replay_one_by_id_leaves_the_others(rabbitmq_url: str) -> None:
    topic, group = unique("t"), unique("g")
    svc = bus.Service(group)
    broken = [True]
    handled: list[bytes] = []

    @svc.subscribe(topic, retry=bus.Retry(attempts=1))
    async def handle(body: bytes) -> None:
        if broken[0]:
            raise bus.Reject("not today")
        handled.append(body)

    async with bus.Bus(rabbitmq_url, services=[svc]) as b:
        first = await b.publish(topic, b"one")
        second = await b.publish(topic, b"two")
        with anyio.fail_after(20):
            while len([d async for d in b.dead_letters(topic, group=group)]) < 2:
                await anyio.sleep(0.02)
        broken[0] = False
        missing = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "replay", topic, "--group", group, "--id", "nope"
        )
        assert missing.returncode == 1
        assert "no dead letter with id 'nope'" in missing.stderr, missing.stderr
        replayed = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "replay", topic, "--group", group, "--id", second
        )
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1 dead letter" in replayed.stdout
        await wait_until(lambda: handled == [b"two"])
        listed = await anyio.to_thread.run_sync(
            cli, rabbitmq_url, "dlq", "list", topic, "--group", group
        )
        assert listed.returncode == 0, listed.stderr
        assert first in listed.stdout and second not in listed.stdout
    assert handled == [b"two"]


async def test_run_finishes_in_flight_work_on_sigterm(rabbitmq_url: str, tmp_path: Path) -> None:
    topic, group = unique("t"), unique("g")
    env = {
        **os.environ,
        "CLI_TEST_DIR": str(tmp_path),
        "CLI_TEST_TOPIC": topic,
        "CLI_TEST_GROUP": group,
        "BUS_PRESENCE_INTERVAL": "0",
    }
    proc = subprocess.Popen(
        [*BUS, "run", "tests.cli.app:service", "--url", rabbitmq_url],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = await anyio.to_thread.run_sync(proc.stderr.readline)
        with anyio.fail_after(30):
            while "running" not in line:
                line = await anyio.to_thread.run_sync(proc.stderr.readline)
        async with bus.Bus(rabbitmq_url) as b:
            await b.publish(topic, b"job-1")
            await wait_until(lambda: (tmp_path / "job-1.started").exists())
            proc.send_signal(signal.SIGTERM)
            code = await anyio.to_thread.run_sync(proc.wait, 30)
        assert code == 0
        assert (tmp_path / "job-1.finished").exists(), "SIGTERM cut the in-flight handler off"
    finally:
        if proc.poll() is None:
            proc.kill()
    # It was acked: a new worker of the group gets nothing.
    seen: list[bytes] = []
    svc = bus.Service(group)

    @svc.subscribe(topic)
    async def again(body: bytes) -> None:
        seen.append(body)

    async with bus.Bus(rabbitmq_url, services=[svc]) as b:
        await b.publish(topic, b"job-2")
        await wait_until(lambda: b"job-2" in seen)
    assert seen == [b"job-2"]


@pytest.mark.parametrize(
    "command", [["status", "--window", "0.2"], ["dlq", "list", "t", "--group", "g"]]
)
def test_bad_url_is_one_line(command: list[str]) -> None:
    result = subprocess.run(
        [*BUS, "--url", "amqp://guest:s3cret@127.0.0.1:1/", *command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr
    assert result.stderr.startswith("bus: error:")


def start_worker(url: str, group: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CLI_TEST_DIR": str(tmp_path),
        "CLI_TEST_TOPIC": unique("t"),
        "CLI_TEST_GROUP": group,
        "BUS_PRESENCE_INTERVAL": "0.3",
    }
    return subprocess.Popen(
        [*BUS, "run", "tests.cli.app:service", "--url", url],
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        text=True,
    )


async def test_status_shows_two_instances_then_one(rabbitmq_url: str, tmp_path: Path) -> None:
    group = unique("svc")
    workers = [start_worker(rabbitmq_url, group, tmp_path) for _ in range(2)]

    def live_instances() -> list[str]:
        out = cli(rabbitmq_url, "status", "--window", "1.0", "-v")
        assert out.returncode == 0, out.stderr
        return [
            line for line in out.stdout.splitlines() if line.startswith(group) and " live " in line
        ]

    try:
        with anyio.fail_after(60):
            while len(await anyio.to_thread.run_sync(live_instances)) != 2:
                pass
        workers[0].send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(workers[0].wait, 30) == 0
        with anyio.fail_after(60):
            while len(lines := await anyio.to_thread.run_sync(live_instances)) != 1:
                pass
        assert str(workers[1].pid) in lines[0]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)

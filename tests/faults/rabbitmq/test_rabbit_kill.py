"""A consumer process SIGKILLed mid-handler loses nothing: another member gets its message."""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

import anyio
from anyio.abc import Process

import bus
from tests.brokers.rabbitmq import url_for

from .killable import Job

ROOT = Path(__file__).resolve().parents[3]


async def wait_for_file(path: Path, proc: Process) -> None:
    with anyio.fail_after(30):
        while not await anyio.Path(path).exists():
            assert proc.returncode is None, f"the consumer process exited: {proc.returncode}"
            await anyio.sleep(0.02)


async def test_consumer_killed_mid_handler_has_its_message_redelivered(
    rabbitmq_run: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    url = url_for(rabbitmq_run, name=f"{rabbitmq_run}-kill-{tag}")
    topic, group = f"kill.{tag}", f"g-{tag}"
    marker = tmp_path / "started"
    script = str(Path(__file__).with_name("killable.py"))
    proc = await anyio.open_process(
        [sys.executable, script, url, topic, group, str(marker)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=None,
        stderr=None,
    )
    try:
        await wait_for_file(Path(str(marker) + ".ready"), proc)
        async with bus.Bus(url) as publisher:
            await publisher.publish(topic, Job(7))
            await publisher.publish(topic, Job(8))
        await wait_for_file(marker, proc)
        assert await anyio.Path(marker).read_text() == "7 1"
    finally:
        proc.send_signal(signal.SIGKILL)
        with anyio.fail_after(10):
            await proc.wait()

    ledger: list[tuple[int, int]] = []
    rescuer = bus.Service(group)

    @rescuer.subscribe(topic, concurrency=1)
    async def handle(job: Job, ctx: bus.Context) -> None:
        ledger.append((job.n, ctx.attempt))

    async with bus.Bus(url, services=[rescuer]):
        with anyio.fail_after(30):
            while len(ledger) < 2:
                await anyio.sleep(0.02)
    assert sorted(ledger)[0] == (7, 2), "the killed handler's message came back, counted"
    assert sorted(n for n, _ in ledger) == [7, 8]

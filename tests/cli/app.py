"""A service for the CLI tests: its handler marks files, so a test can see it start and
finish from outside the process. ``CLI_TEST_DIR`` names the folder; ``CLI_TEST_TOPIC``
the topic."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

import bus

TOPIC = os.environ.get("CLI_TEST_TOPIC", "cli.work")
service = bus.Service(os.environ.get("CLI_TEST_GROUP", "cli-worker"))


@service.subscribe(TOPIC, concurrency=2)
async def work(body: bytes) -> None:
    folder = Path(os.environ["CLI_TEST_DIR"])
    name = body.decode()
    (folder / f"{name}.started").write_text(str(os.getpid()))
    await anyio.sleep(1.0)
    (folder / f"{name}.finished").write_text(str(os.getpid()))

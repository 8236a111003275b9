"""Stores for the outbox and inbox tests.

PostgreSQL: the server on 127.0.0.1:5432 (trust auth; started with ``pg_ctlcluster`` if
it is down, failing, never skipping, if it cannot be). The session creates a database of
its own from ``test`` and drops it at the end; each test gets a schema of its own in it
(``?search_path=`` passes through asyncpg as a server setting), so no relay of one test
ever sees another's rows. SQLite: a file in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
ADMIN_DSN = f"postgresql://{USER}@{HOST}:{PORT}/test"
START_DEADLINE = 60.0


def pg_up() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_postgres() -> None:
    if pg_up():
        return
    versions = sorted(Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    ctl = shutil.which("pg_ctlcluster")
    if ctl is None or not versions:
        pytest.fail(f"PostgreSQL is not listening on {HOST}:{PORT} and cannot be started here")
    subprocess.run(
        [ctl, "--skip-systemctl-redirect", versions[-1].name, "main", "start"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    deadline = time.monotonic() + START_DEADLINE
    while not pg_up():
        if time.monotonic() > deadline:
            pytest.fail(f"PostgreSQL did not start listening on {HOST}:{PORT}")
        time.sleep(0.5)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The DSN of a database this session created (and drops at its end)."""
    ensure_postgres()
    name = f"bus_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{USER}@{HOST}:{PORT}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def new_schema(pg_database: str) -> str:
    """A store URL whose tables live in a new schema of the session's database."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(pg_database, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{pg_database}?search_path={schema}"


@pytest.fixture
async def pg_url(pg_database: str) -> str:
    """A store URL whose tables live in a schema of this test's own."""
    return await new_schema(pg_database)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", "pg"])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def pg_connect(url: str) -> Any:
    """A plain asyncpg connection to the store of ``url`` (its schema included)."""
    return await asyncpg.connect(url, timeout=10)

"""What the store tests share: payloads, reading the bus's tables as they are, and
writing rows by hand as another writer (an older bus, a script) could."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import msgspec

from bus.store.sqlite import database_path


class Step(msgspec.Struct):
    key: str
    seq: int


def is_pg(url: str) -> bool:
    return url.startswith("postgres")


async def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the store of ``url``, on a connection of its own (only what is
    committed)."""
    if is_pg(url):
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def run() -> list[tuple[Any, ...]]:
        raw = sqlite3.connect(database_path(url), timeout=10)
        try:
            rows = raw.execute(re.sub(r"\$\d+", "?", sql), args).fetchall()  # $n: in order
            raw.commit()
            return rows
        finally:
            raw.close()

    return await anyio.to_thread.run_sync(run)


async def count(url: str, table: str) -> int:
    return int((await query(url, f"SELECT count(*) FROM {table}"))[0][0])


async def insert_raw(
    url: str, topic: str, key: str | None, message_id: str, headers: bytes, body: bytes
) -> None:
    """An outbox row written by hand, committed."""
    if is_pg(url):
        await query(
            url,
            "INSERT INTO bus_outbox (topic, msg_key, message_id, headers, body, content_type) "
            "VALUES ($1, $2, $3, $4, $5, 'application/json') RETURNING id",
            topic,
            key,
            message_id,
            headers,
            body,
        )
        return
    await query(
        url,
        "INSERT INTO bus_outbox (topic, msg_key, message_id, headers, body, content_type, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'application/json', ?) RETURNING id",
        topic,
        key,
        message_id,
        headers,
        body,
        time.time(),
    )

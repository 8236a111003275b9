"""Enlisting in SQLAlchemy's own transaction (AsyncConnection, AsyncSession on asyncpg):
the outbox rows commit or roll back with the caller's."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from sqlalchemy.ext import asyncio as sqlalchemy

import bus
from tests.conformance.helpers import unique

from .helpers import Step, count


def _engine(pg_url: str) -> object:
    parts = urlsplit(pg_url)
    schema = dict(parse_qsl(parts.query))["search_path"]
    return sqlalchemy.create_async_engine(
        parts._replace(scheme="postgresql+asyncpg", query="").geturl(),
        connect_args={"server_settings": {"search_path": schema}},
    )


async def test_rows_follow_a_sqlalchemy_connection_and_session(
    pg_url: str, memory_url: str
) -> None:
    topic = unique("sa")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    engine = _engine(pg_url)
    try:
        async with bus.Bus(memory_url, services=[consumer], store=pg_url) as b:
            with pytest.raises(RuntimeError):
                async with engine.begin() as conn:  # type: ignore[attr-defined]
                    async with b.transaction(connection=conn) as tx:
                        await tx.publish(topic, Step("k", 1))
                    raise RuntimeError("SQLAlchemy rolls back")
            assert await count(pg_url, "bus_outbox") == 0
            async with (
                engine.begin() as conn,  # type: ignore[attr-defined]
                b.transaction(connection=conn) as tx,
            ):
                await tx.publish(topic, Step("k", 2))
            async with (
                sqlalchemy.AsyncSession(engine) as session,
                session.begin(),
                b.transaction(connection=session) as tx,
            ):
                await tx.publish(topic, Step("k", 3))
            with anyio.fail_after(10):
                while got != [2, 3]:
                    await anyio.sleep(0.01)
    finally:
        await engine.dispose()  # type: ignore[attr-defined]

"""The ``outbox`` scenario's stage and its raw side (RabbitMQ and PostgreSQL only).

The stage: a PostgreSQL database of the scenario's own (created from ``BENCH_PG_URL``,
default the tests' ``postgresql://postgres@127.0.0.1:5432/test``, trust auth; dropped at
the end) and an exchange of its own (named after the run's prefix, so the run's clean-up
catches it too; deleted at the end with every queue the scenario made). Each publishing
run gets a fresh topic and a sink queue bound to it, so what is published is routed and
stored, never dropped, and the queue is deleted after the run: every run starts alike.

The raw side is an outbox written by hand with asyncpg and aio-pika doing the bus's work:
a pool as large as the bus's store pool (10), a row inserted per transaction; a relay
that takes up to 100 rows with ``FOR UPDATE SKIP LOCKED``, publishes them with publisher
confirms (in order per key, keys concurrently), deletes them and commits, woken
in-process at each commit as the bus's relay is. With ``notify`` its insert also sends a
``pg_notify`` at commit, in the same statement, as the bus's does so that relays of other
processes hear of the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel

import bus
from benchmarks.suite import drive
from benchmarks.suite.drive import uid
from benchmarks.suite.model import Payload, encode
from benchmarks.suite.track import percentiles

ADMIN_DSN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
POOL = 10  # the bus's store pool (bus.store.base.StoreOptions.pool_max)
RELAY_BATCH = 100
TIMEOUT = 120.0

RAW_TABLE = """CREATE TABLE raw_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic TEXT NOT NULL,
    msg_key TEXT, message_id TEXT NOT NULL, body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
RAW_INSERT = "INSERT INTO raw_outbox (topic, msg_key, message_id, body) VALUES ($1, $2, $3, $4)"
# As the bus does, so relays in other processes hear of the row at commit.
RAW_INSERT_NOTIFY = f"""WITH added AS ({RAW_INSERT} RETURNING 1)
    SELECT pg_notify('raw_outbox', '') FROM added"""
RAW_CLAIM = (
    "SELECT id, topic, msg_key, message_id, body FROM raw_outbox "
    f"ORDER BY id LIMIT {RELAY_BATCH} FOR UPDATE SKIP LOCKED"
)
RAW_DELETE = "DELETE FROM raw_outbox WHERE id = ANY($1::bigint[])"
EFFECTS_TABLE = "CREATE TABLE effects (seq BIGINT NOT NULL)"  # what handlers write


def _dsn(admin: str, database: str) -> str:
    base, _, query = admin.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


@dataclass
class Stage:
    """The scenario's database (``dsn``) and exchange, and the queues made on it."""

    amqp: str  # the RabbitMQ URL, without options
    exchange: str
    dsn: str
    channel: AbstractChannel
    queues: set[str] = field(default_factory=set)

    @property
    def bus_url(self) -> str:
        return f"{self.amqp}?exchange={self.exchange}"

    @asynccontextmanager
    async def sink(self, topic: str) -> AsyncIterator[None]:
        """A durable queue keeping what is published to ``topic`` while the body runs."""
        name = f"{self.exchange}:sink:{topic}"
        self.queues.add(name)
        queue = await self.channel.declare_queue(name, durable=True)
        await queue.bind(self.exchange, topic)
        try:
            yield
        finally:
            await self._delete(name)

    @asynccontextmanager
    async def group(self, topic: str) -> AsyncIterator[str]:
        """A group name for ``topic``; its queues (the bus's ``X:g:t`` and dead letters)
        are deleted after the body."""
        name = f"inbox-{uid()}"
        queue = f"{self.exchange}:{name}:{topic}"
        self.queues |= {queue, f"{queue}:dlq"}
        try:
            yield name
        finally:
            await self._delete(queue)
            await self._delete(f"{queue}:dlq")

    async def _delete(self, queue: str) -> None:
        await self.channel.queue_delete(queue)
        self.queues.discard(queue)


@asynccontextmanager
async def stage(amqp: str, prefix: str) -> AsyncIterator[Stage]:
    """A database and an exchange of the scenario's own, with the bus's tables, the raw
    outbox's and the handlers' ``effects``; dropped and deleted at the end."""
    tag = uid()
    database, exchange = f"bus_bench_{tag}", f"{prefix}-outbox-{tag}"
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"the outbox scenario needs PostgreSQL ({ADMIN_DSN}, or set BENCH_PG_URL): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        dsn = _dsn(ADMIN_DSN, database)
        setup = await asyncpg.connect(dsn, timeout=10)
        try:
            await setup.execute(EFFECTS_TABLE)
            await setup.execute(RAW_TABLE)
        finally:
            await setup.close()
        conn = await aio_pika.connect(amqp)
        try:
            channel = await conn.channel()
            await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            st = Stage(amqp, exchange, dsn, channel)
            try:
                # The bus's tables, made before any side's run.
                async with bus.Bus(st.bus_url, store=dsn, presence_interval=None):
                    pass
                yield st
            finally:
                for queue in sorted(st.queues):
                    await channel.queue_delete(queue)
                await channel.exchange_delete(exchange)
        finally:
            await conn.close()
    finally:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


class RawOutbox:
    """A hand-written asyncpg outbox and relay doing the bus's work (see the module)."""

    profiled = False

    def __init__(self, st: Stage, notify: bool) -> None:
        self.stage = st
        self.notify = notify
        self.name = "asyncpg outbox + NOTIFY" if notify else "asyncpg outbox"

    async def send(
        self, topic: str, items: list[Payload], producers: int, pace: float = 0.0
    ) -> dict[str, float]:
        """Commit every item in a transaction of its own from ``producers`` keyed tasks,
        and relay them; msg/s from the first insert to the last confirm, and latency
        percentiles (ms) from each commit to its message's confirm."""
        insert = RAW_INSERT_NOTIFY if self.notify else RAW_INSERT
        n = len(items)
        committed: dict[str, float] = {}
        confirmed: dict[str, float] = {}
        wake = asyncio.Event()
        pool = await asyncpg.create_pool(self.stage.dsn, min_size=1, max_size=POOL)
        conn = await aio_pika.connect(self.stage.amqp)
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.stage.exchange)

            async def send_key(rows: list[Any]) -> None:
                for row in rows:  # in order per key
                    await exchange.publish(
                        aio_pika.Message(
                            row["body"],
                            content_type="application/json",
                            message_id=row["message_id"],
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            headers={"bus-payload-type": "Payload"},
                        ),
                        row["topic"],
                    )
                    if row["message_id"] in committed:  # not a row a failed run left
                        confirmed[row["message_id"]] = time.perf_counter()

            async def relay() -> None:
                while len(confirmed) < n:
                    async with pool.acquire() as c, c.transaction():
                        rows = await c.fetch(RAW_CLAIM)
                        if rows:
                            by_key: dict[Any, list[Any]] = defaultdict(list)
                            for row in rows:
                                by_key[row["msg_key"] or row["id"]].append(row)
                            await asyncio.gather(*(send_key(v) for v in by_key.values()))
                            await c.execute(RAW_DELETE, [r["id"] for r in rows])
                    if not rows:
                        wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), 1.0)

            async def one(i: int, key: str) -> None:
                message_id = uuid.uuid4().hex
                async with pool.acquire() as c, c.transaction():
                    await c.execute(insert, topic, key, message_id, encode(items[i]))
                    committed[message_id] = time.perf_counter()  # the commit comes next
                wake.set()

            start = time.perf_counter()
            relay_task = asyncio.create_task(relay())
            try:
                await drive.keyed_producers(n, producers, one, pace)
                await asyncio.wait_for(relay_task, TIMEOUT)  # every row confirmed
                wall = time.perf_counter() - start
            finally:
                if not relay_task.done():
                    relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay_task
        finally:
            await conn.close()
            await pool.close()
        took = [confirmed[m] - t for m, t in committed.items()]
        return {"rate": n / wall, **percentiles(took)}

"""The SQLite store, the embedded default: the standard library's sqlite3 on a worker
thread, so ``make demo`` needs no database server and no extra package.

Why not aiosqlite: it is the same design (one connection driven from a thread) as a
dependency; these few lines keep the core's dependencies as they are.

One connection per store, and one transaction at a time on it (an ``anyio.Lock`` held
from BEGIN IMMEDIATE to COMMIT): SQLite has a single writer anyway. Other processes on
the same file wait for the write lock up to ``connect_timeout``. ``tx.connection`` is a
``SqliteConnection``: asyncpg's method names (``execute``, ``fetch``, ``fetchrow``,
``fetchval``) with SQLite's ``?`` parameters.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from bus.errors import BusError, ConfigError
from bus.store import sql
from bus.store.base import OutboxRow, OutboxStats, StoreError, StoreOptions, StoreUnavailable
from bus.store.schema import check_version

T = TypeVar("T")

_holding: contextvars.ContextVar[SqliteStore | None] = contextvars.ContextVar(
    "bus_sqlite_transaction", default=None
)
# Stores of one process on one file: a commit in one wakes the relays of all.
_neighbours: dict[str, weakref.WeakSet[SqliteStore]] = {}


def database_path(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` (as SQLAlchemy writes them),
    or ``sqlite://`` / ``sqlite:///:memory:`` for a private in-memory database."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigError(
            f"bad store URL {url!r}: sqlite:// takes no host; write sqlite:///relative.db, "
            "sqlite:////absolute/path.db or sqlite:// (in memory)"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    return path or ":memory:"


class SqliteConnection:
    """An async face on one sqlite3 connection: every call runs on a worker thread, one
    at a time. Method names follow asyncpg's; parameters are SQLite's ``?``."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self._limiter = anyio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)

    async def execute(self, query: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
        return await self._run(lambda: self.raw.execute(query, args).rowcount)

    async def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._run(lambda: self.raw.executemany(query, rows))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return await self._run(lambda: self.raw.execute(query, args).fetchall())

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._run(lambda: self.raw.execute(query, args).fetchone())

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return None if row is None else row[0]

    async def close(self) -> None:
        await self._run(self.raw.close)


class SqliteTx:
    """One open transaction on the store's connection."""

    __slots__ = ("added", "connection")

    def __init__(self, connection: SqliteConnection) -> None:
        self.connection = connection
        self.added = False

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        now = time.time()
        await self.connection.executemany(
            sql.SQLITE_ADD_OUTBOX,
            [
                (r.topic, r.key, r.message_id, r.correlation_id, r.content_type, r.headers,
                 r.body, now)
                for r in rows
            ],
        )  # fmt: skip
        self.added = True

    async def record_inbox(self, group: str, message_id: str) -> bool:
        changed = await self.connection.execute(
            sql.SQLITE_RECORD_INBOX, group, message_id, time.time()
        )
        return changed == 1


class SqliteStore:
    """The bus's tables in one SQLite database."""

    enlists = False

    def __init__(self, url: str, options: StoreOptions) -> None:
        self._path = database_path(url)
        self.label = url
        self._file = None if self._path == ":memory:" else os.path.abspath(self._path)
        self.options = options
        self._conn: SqliteConnection | None = None
        self._lock = anyio.Lock()
        self._wake: Callable[[], None] | None = None

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            raw = sqlite3.connect(
                self._path,
                timeout=self.options.connect_timeout,
                isolation_level=None,  # BEGIN and COMMIT are ours
                check_same_thread=False,  # one thread at a time, by the limiter
            )
            if self._path != ":memory:":
                raw.execute("PRAGMA journal_mode=WAL")  # readers never wait on the writer
            return raw

        try:
            self._conn = SqliteConnection(await anyio.to_thread.run_sync(connect))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store {self._path!r}: {exc}") from None
        async with self._transaction() as conn:
            await conn.execute(sql.SQLITE_SCHEMA_TABLE)
            version = await conn.fetchval(sql.SQLITE_SCHEMA_READ)
            for step in check_version(version, sql.SQLITE_MIGRATIONS, repr(self._path)):
                await conn.execute(step)
            if version != sql.VERSION:
                await conn.execute(sql.SQLITE_SCHEMA_WRITE, sql.VERSION)
        if self._file is not None:
            _neighbours.setdefault(self._file, weakref.WeakSet()).add(self)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._lock:
                await conn.close()

    def _require_conn(self) -> SqliteConnection:
        if self._conn is None:
            raise StoreError("the store is not open: use it inside `async with bus.Bus(...)`")
        return self._conn

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqliteConnection]:
        if _holding.get() is self:
            raise BusError(
                "a transaction on this SQLite store is already open in this task (SQLite "
                "has one writer): use the open one (ctx.transaction in an idempotent handler)"
            )
        conn = self._require_conn()
        async with self._lock:
            token = _holding.set(self)
            try:
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:  # locked by another process
                    raise StoreUnavailable(f"SQLite store {self._path!r}: {exc}") from None
                try:
                    yield conn
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await conn.execute("ROLLBACK")
                    raise
                with anyio.CancelScope(shield=True):
                    await conn.execute("COMMIT")
            finally:
                _holding.reset(token)

    @contextlib.asynccontextmanager
    async def begin(self, connection: object | None = None) -> AsyncIterator[SqliteTx]:
        if connection is not None:
            raise ConfigError(
                "transaction(connection=...) enlists in a PostgreSQL connection; a SQLite "
                "store runs its own transactions: call transaction() without one"
            )
        async with self._transaction() as conn:
            tx = SqliteTx(conn)
            yield tx
        if tx.added:
            self._wake_all()

    def _wake_all(self) -> None:
        neighbours = _neighbours.get(self._file) if self._file is not None else None
        for store in neighbours or (self,):
            if store._wake is not None:
                store._wake()

    async def claim(self, owner: str, limit: int, lease: float) -> list[OutboxRow]:
        async with self._transaction() as conn:
            records = await conn.fetch(sql.SQLITE_CLAIM, owner, time.time(), lease, limit)
        rows = [
            OutboxRow(
                id=r[0],
                topic=r[1],
                key=r[2],
                message_id=r[3],
                correlation_id=r[4],
                content_type=r[5],
                headers=r[6],
                body=r[7],
            )
            for r in records
        ]
        rows.sort(key=lambda r: r.id)
        return rows

    async def finish(
        self,
        owner: str,
        sent: Sequence[int],
        dead: Sequence[tuple[int, str]],
        released: Sequence[tuple[int, str]],
    ) -> None:
        now = time.time()
        async with self._transaction() as conn:
            if sent:
                await conn.executemany(sql.SQLITE_DELETE_SENT, [(i, owner) for i in sent])
            if dead:
                await conn.executemany(
                    sql.SQLITE_COPY_DEAD, [(i, owner, now, reason) for i, reason in dead]
                )
                await conn.executemany(sql.SQLITE_DELETE_DEAD, [(i, owner) for i, _ in dead])
            if released:
                await conn.executemany(sql.SQLITE_RELEASE, [(i, owner, e) for i, e in released])

    async def prune_inbox(self, older_than: float) -> int:
        async with self._transaction() as conn:
            return await conn.execute(sql.SQLITE_PRUNE_INBOX, time.time() - older_than)

    async def outbox_stats(self) -> OutboxStats:
        async with self._transaction() as conn:  # committed rows only
            row = await conn.fetchrow(sql.SQLITE_OUTBOX_STATS, time.time())
        return OutboxStats(size=row[0], lag=max(0.0, float(row[1])), dead=row[2])

    async def listen(self, wake: Callable[[], None]) -> None:
        self._wake = wake  # commits in this process wake it; others are found by polling

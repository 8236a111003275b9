"""The PostgreSQL store, through asyncpg: a pool for transactions and the relay, and one
connection that LISTENs for commits of outbox rows.

Imported only when a ``postgresql://`` store is used, so asyncpg is needed only then
(``pip install 'bus[postgres]'``). Enlisting takes an asyncpg connection, or a
SQLAlchemy ``AsyncConnection`` / ``AsyncSession`` running on asyncpg (its driver
connection underneath).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio

from bus.errors import ConfigError
from bus.store import sql
from bus.store.base import OutboxRow, OutboxStats, StoreError, StoreOptions, StoreUnavailable
from bus.store.schema import check_version
from bus.url import redact

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError(
        f"a postgresql:// store needs asyncpg ({exc.name or exc}); "
        "install it with: pip install 'bus[postgres]'"
    ) from None

log = logging.getLogger("bus.store")

# What "the database cannot be reached" looks like from asyncpg: a refused or dropped
# socket, a connection the server closed, a pool or connect timeout.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


# What a statement raises when the connection under it is lost (a user's SQL error is
# none of these, and passes through untouched; so does one of these raised by the
# caller's own code while the connection is still up: see ``begin``).
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError)


class PgTx:
    """One open transaction on one asyncpg connection."""

    __slots__ = ("added", "connection")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.added = False

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        await self.connection.execute(
            sql.PG_ADD_OUTBOX,
            [r.topic for r in rows],
            [r.key for r in rows],
            [r.message_id for r in rows],
            [r.correlation_id for r in rows],
            [r.content_type for r in rows],
            [r.headers for r in rows],
            [r.body for r in rows],
        )
        self.added = True

    async def record_inbox(self, group: str, message_id: str) -> bool:
        status: str = await self.connection.execute(sql.PG_RECORD_INBOX, group, message_id)
        return status.endswith(" 1")


class PostgresStore:
    """The bus's tables in one PostgreSQL database."""

    enlists = True

    def __init__(self, url: str, dsn: str, options: StoreOptions) -> None:
        self._url = url
        self.label = redact(url)
        self._dsn = dsn
        self.options = options
        self._pool: Any = None
        self._listener: Any = None
        self._wake: Callable[[], None] | None = None

    def _unavailable(self, exc: BaseException, doing: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"the store {redact(self._url)} cannot be reached ({type(exc).__name__}: {exc}); "
            f"{doing}. Is PostgreSQL running and the URL right?"
        )

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.options.pool_max,
                timeout=self.options.connect_timeout,
            )
        except _UNREACHABLE as exc:
            raise self._unavailable(exc, "the bus did not start") from None
        except asyncpg.PostgresError as exc:  # a missing database, a refused login
            raise StoreError(f"the store {redact(self._url)} refused the bus: {exc}") from None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.PG_SCHEMA_LOCK)
                await conn.execute(sql.PG_SCHEMA_TABLE)
                version = await conn.fetchval(sql.PG_SCHEMA_READ)
                for step in check_version(version, sql.PG_MIGRATIONS, redact(self._url)):
                    await conn.execute(step)
                if version != sql.VERSION:
                    await conn.execute(sql.PG_SCHEMA_WRITE, sql.VERSION)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=2.0)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except Exception:  # a pool whose server vanished: drop its connections
                pool.terminate()

    @contextlib.asynccontextmanager
    async def begin(self, connection: object | None = None) -> AsyncIterator[PgTx]:
        if connection is not None:
            async with self._enlisted(connection) as tx:
                yield tx
            return
        pool = self._require_pool()
        try:
            conn = await pool.acquire(timeout=self.options.connect_timeout)
        except _UNREACHABLE as exc:
            raise self._unavailable(exc, "the transaction did not start") from None
        try:
            transaction = conn.transaction()
            try:
                await transaction.start()
            except _UNREACHABLE as exc:
                raise self._unavailable(exc, "the transaction did not start") from None
            tx = PgTx(conn)
            try:
                yield tx
            except BaseException as exc:
                rolled_back = False
                with anyio.CancelScope(shield=True), contextlib.suppress(*_UNREACHABLE):
                    await transaction.rollback()
                    rolled_back = True
                if isinstance(exc, _LOST) and (not rolled_back or conn.is_closed()):
                    # The connection died with the transaction open: the server dropped it.
                    raise self._unavailable(exc, "the transaction was rolled back") from None
                # The block's own error, on a live connection: an OSError the caller's code
                # raised (a ConnectionError of its own) is no sign the store is out of reach.
                raise
            try:
                await transaction.commit()
            except _UNREACHABLE as exc:
                # Whether the server committed before the connection broke is unknown.
                raise self._unavailable(
                    exc, "the commit's outcome is unknown (committed or rolled back)"
                ) from None
            if tx.added and self._wake is not None:
                self._wake()  # our own relay at once; others hear the NOTIFY
        finally:
            # A connection lost after the commit is the pool's to drop, not an error of
            # the transaction (asyncpg terminates it when its reset fails).
            with anyio.CancelScope(shield=True), contextlib.suppress(*_UNREACHABLE):
                await pool.release(conn)

    @contextlib.asynccontextmanager
    async def _enlisted(self, connection: object) -> AsyncIterator[PgTx]:
        conn = await _driver_connection(connection)
        if conn.is_in_transaction():
            yield PgTx(conn)  # the caller commits or rolls back
            return
        async with conn.transaction():  # not in one yet: this block is the transaction
            yield PgTx(conn)

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreError("the store is not open: use it inside `async with bus.Bus(...)`")
        return self._pool

    async def claim(self, owner: str, limit: int, lease: float) -> list[OutboxRow]:
        async with self._require_pool().acquire() as conn, conn.transaction():
            await conn.execute(sql.PG_CLAIM_LOCK)
            records = await conn.fetch(sql.PG_CLAIM, owner, limit, lease)
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
        async with self._require_pool().acquire() as conn, conn.transaction():
            if sent:
                await conn.execute(sql.PG_DELETE_SENT, list(sent), owner)
            if dead:
                await conn.execute(
                    sql.PG_MOVE_DEAD, [i for i, _ in dead], [r for _, r in dead], owner
                )
            if released:
                await conn.execute(
                    sql.PG_RELEASE, [i for i, _ in released], [e for _, e in released], owner
                )

    async def prune_inbox(self, older_than: float) -> int:
        async with self._require_pool().acquire() as conn:
            status: str = await conn.execute(sql.PG_PRUNE_INBOX, older_than)
        return int(status.rsplit(" ", 1)[-1])

    async def outbox_stats(self) -> OutboxStats:
        async with self._require_pool().acquire() as conn:
            size, lag, dead = await conn.fetchrow(sql.PG_OUTBOX_STATS)
        return OutboxStats(size=size, lag=max(0.0, float(lag)), dead=dead)

    async def listen(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        conn = await asyncpg.connect(self._dsn, timeout=self.options.connect_timeout)
        await conn.add_listener(sql.NOTIFY_CHANNEL, self._notified)
        self._listener = conn

    def _notified(self, *_: object) -> None:
        if self._wake is not None:
            self._wake()


async def _driver_connection(connection: object) -> Any:
    """The asyncpg connection behind ``connection``: itself, or the one under a
    SQLAlchemy AsyncConnection or AsyncSession (looked up by duck type: SQLAlchemy is
    never imported here), whose transaction must have begun."""
    if isinstance(connection, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        return connection
    kind = type(connection).__name__
    if kind == "AsyncSession":
        connection = await connection.connection()  # type: ignore[attr-defined]
        kind = type(connection).__name__
    if kind == "AsyncConnection" and hasattr(connection, "get_raw_connection"):
        # SQLAlchemy sends BEGIN lazily, with its first statement: send one, so the
        # rows land in its transaction rather than in one of their own.
        await connection.exec_driver_sql("SELECT 1")  # type: ignore[attr-defined]
        raw = await connection.get_raw_connection()
        driver = getattr(raw, "driver_connection", None)
        if isinstance(driver, asyncpg.Connection):
            if not driver.is_in_transaction():
                raise ConfigError(
                    "the SQLAlchemy connection given to transaction(connection=...) is not "
                    "in a transaction (autocommit?): begin one first"
                )
            return driver
    raise ConfigError(
        f"transaction(connection=...) takes an asyncpg connection, or a SQLAlchemy "
        f"AsyncConnection or AsyncSession on the asyncpg driver, not {type(connection)!r}"
    )

"""The shop's own tables, kept in the bus's store beside the outbox and inbox, so a
service's writes commit together with the messages it publishes and the inbox row of
the message it handles (``bus.Transaction``), and any number of instances share them.

| table | owner | rows |
| --- | --- | --- |
| ``shop_orders`` | orders | one per order: its status and the ``Order`` as JSON |
| ``shop_stock`` | inventory | units left per sku, seeded from ``SHOP_STOCK`` once |
| ``shop_holds`` | inventory | one per order it saw: ``reserved``, ``refused`` or ``released`` |
| ``shop_charges`` | payments | the pretend provider's answer per order (its idempotency key) |
| ``shop_checkouts`` | checkout | the saga's outcome per order, recorded by its first run |

The SQL is written once with ``?`` parameters and runs on both stores: ``Db`` turns them
into PostgreSQL's ``$n`` when the connection is asyncpg's. Tables are created, and the
stock seeded, by the first transaction that finds them missing (under a lock on
PostgreSQL, so instances starting together do it once).

``read_now`` reads a SQLite file store from outside the bus, synchronously, for the demo's
summary and the tests' accounting (``Orders.store``, ``Inventory.stock``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import bus
from bus.store.sqlite import SqliteConnection, database_path

RESERVED, REFUSED, RELEASED = "reserved", "refused", "released"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS shop_orders (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, "
    "body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shop_stock (sku TEXT PRIMARY KEY, units INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shop_holds (order_id TEXT PRIMARY KEY, state TEXT NOT NULL, "
    "reason TEXT NOT NULL, lines TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shop_charges (order_id TEXT PRIMARY KEY, "
    "approved INTEGER NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shop_checkouts (order_id TEXT PRIMARY KEY, "
    "succeeded INTEGER NOT NULL, reason TEXT NOT NULL, compensations TEXT NOT NULL)",
)
_NEWEST = "shop_checkouts"  # a store whose tables predate it gets the missing ones made
_SEED = "INSERT INTO shop_stock (sku, units) VALUES (?, ?) ON CONFLICT (sku) DO NOTHING"
_PARAM = re.compile(r"\?")


class Db:
    """A connection in a transaction, either store's: ``?`` parameters, rows changed as
    an int, and ``{lock}`` in a query meaning ``FOR UPDATE`` where there is one (SQLite
    has one writer at a time: its transaction holds everything already)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.pg = not isinstance(connection, SqliteConnection)

    def _sql(self, query: str) -> str:
        query = query.replace("{lock}", "FOR UPDATE" if self.pg else "")
        if not self.pg:
            return query
        n = iter(range(1, 1000))
        return _PARAM.sub(lambda _: f"${next(n)}", query)

    async def execute(self, query: str, *args: Any) -> int:
        """Run one statement; the number of rows it changed."""
        done = await self.connection.execute(self._sql(query), *args)
        if isinstance(done, str):  # asyncpg's status: "INSERT 0 1", "CREATE TABLE"
            count = done.rsplit(" ", 1)[-1]
            return int(count) if count.isdigit() else 0
        return int(done)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return list(await self.connection.fetch(self._sql(query), *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self.connection.fetchrow(self._sql(query), *args)


class Tables:
    """The shop's tables in one store, made on first use; ``stock`` seeds ``shop_stock``."""

    def __init__(self, stock: Mapping[str, int]) -> None:
        self.stock = dict(stock)
        self.ready = False

    async def use(self, tx: bus.Transaction) -> Db:
        """``tx``'s connection as a ``Db``, the tables made first if they are missing.
        Marked ready only once they were found: a transaction that made them may still
        roll back (a handler that fails), and then the next one makes them again."""
        db = Db(tx.connection)
        if self.ready:
            return db
        if db.pg:
            await db.execute("SELECT pg_advisory_xact_lock(hashtext('shop_tables'))")
            found = await db.fetchrow(f"SELECT to_regclass('{_NEWEST}') IS NOT NULL")
        else:
            found = await db.fetchrow(
                f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{_NEWEST}'"
            )
        if found[0]:
            self.ready = True
            return db
        for statement in _TABLES:
            await db.execute(statement)
        for sku, units in self.stock.items():
            await db.execute(_SEED, sku, units)
        return db


def read_now(store: str | None, query: str, default: Sequence[Any] = ()) -> list[Any]:
    """Rows of ``query`` in the SQLite file store ``store``, committed ones only, read
    synchronously on a connection of its own; ``default`` while the tables do not exist
    yet. PostgreSQL and in-memory stores cannot be read from outside the bus this way."""
    path = database_path(store) if store and store.startswith("sqlite:") else ":memory:"
    if path == ":memory:":
        raise bus.ConfigError(
            f"the shop's state can be read directly only from a SQLite file store, not "
            f"{store!r}: query the tables (services/state.py) on the database instead"
        )
    raw = sqlite3.connect(path, timeout=10)
    try:
        return raw.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return list(default)
        raise
    finally:
        raw.close()

"""What every store driver provides: the outbox and inbox operations the core needs.

A store is the bus's own tables in the user's database (see ``bus.store.sql``). The core
speaks to it only through ``Store`` and ``StoreTx``; no driver type appears here. Drivers
translate "the database cannot be reached" into ``StoreUnavailable`` at this boundary;
errors of the user's own SQL pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import msgspec

from bus.errors import BusError


class StoreError(BusError):
    """The store refused an operation of the bus (a schema it cannot use, a bad call)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now; nothing was written. Try again later."""


class StoreOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options read from the store URL's query (``?lease=10&poll_interval=0.5``); the
    driver's own query options (PostgreSQL's ``sslmode``...) pass through to it."""

    poll_interval: float = 1.0
    """Seconds between looks at the outbox when no commit woke the relay."""
    lease: float = 30.0
    """Seconds a relay holds the rows it claimed; another relay may take them after."""
    batch: int = 100
    """Rows a relay claims at once."""
    inbox_retention: float = 7 * 24 * 3600.0
    """Seconds an inbox row (group, message id) is kept: a duplicate arriving later than
    this after the first delivery runs its handler again."""
    housekeeping_interval: float = 60.0
    """Seconds between removals of inbox rows past their retention."""
    pool_max: int = 10
    """Most database connections a bus opens at once (PostgreSQL)."""
    connect_timeout: float = 5.0
    """Seconds to wait for a database connection before raising StoreUnavailable."""


OPTION_NAMES = frozenset(StoreOptions.__struct_fields__)


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    """One message waiting in the outbox. ``id`` orders rows: the relay sends rows of one
    (topic, key) in ``id`` order."""

    topic: str
    key: str | None
    message_id: str
    correlation_id: str | None
    content_type: str | None
    headers: bytes
    """The message's headers as JSON, trace context included."""
    body: bytes
    id: int = 0


class OutboxStats(msgspec.Struct, frozen=True):
    """How the outbox stands now, for metrics and ``bus status``."""

    size: int
    """Rows waiting to be sent."""
    lag: float
    """Seconds since the oldest waiting row was committed (0 when none waits)."""
    dead: int
    """Rows in ``bus_outbox_dead``."""


class StoreTx(Protocol):
    """One open database transaction."""

    connection: Any
    """The driver's own connection, in the transaction."""

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        """Insert ``rows`` in this transaction, in order, and arrange for relays to be
        woken when it commits."""

    async def record_inbox(self, group: str, message_id: str) -> bool:
        """Insert (group, message id); False when it is already there (committed by
        another transaction), in which case nothing changed. Waits while another open
        transaction holds the same pair."""


class Store(Protocol):
    """The bus's tables in one database."""

    options: StoreOptions
    label: str
    """The store's URL without its password, for logs and metrics."""
    enlists: bool
    """Whether ``begin`` can enlist in a caller's connection."""

    async def open(self) -> None:
        """Connect and create or upgrade the tables; raise StoreUnavailable or
        StoreError, loudly, when it cannot."""

    async def close(self) -> None:
        """Close every connection. Idempotent."""

    def begin(self, connection: object | None = None) -> AbstractAsyncContextManager[StoreTx]:
        """A transaction: committed when the block ends cleanly, rolled back when it
        raises. With ``connection`` (the caller's, already in a transaction) the block
        enlists in it and neither commits nor rolls back: the caller does."""

    async def claim(self, owner: str, limit: int, lease: float) -> list[OutboxRow]:
        """Lease up to ``limit`` committed rows to ``owner`` for ``lease`` seconds, in
        ``id`` order, skipping any row of a (topic, key) whose earlier row another relay
        holds, so rows of one key are never sent by two relays at once."""

    async def finish(
        self,
        owner: str,
        sent: Sequence[int],
        dead: Sequence[tuple[int, str]],
        released: Sequence[tuple[int, str]],
    ) -> None:
        """In one transaction: delete the ``sent`` rows, move the ``dead`` ones with
        their reason to the outbox's dead letters, and give back the lease of the
        ``released`` ones noting their error; only rows ``owner`` still holds."""

    async def prune_inbox(self, older_than: float) -> int:
        """Delete inbox rows recorded more than ``older_than`` seconds ago; how many."""

    async def outbox_stats(self) -> OutboxStats:
        """The outbox's size and lag, and how many rows are in its dead letters."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever any process commits outbox rows (where the database
        can say so; otherwise nothing). Re-listens if the listening connection was lost."""


__all__ = [
    "OPTION_NAMES",
    "OutboxRow",
    "OutboxStats",
    "Store",
    "StoreError",
    "StoreOptions",
    "StoreTx",
    "StoreUnavailable",
]

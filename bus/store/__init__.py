"""Stores: the bus's outbox and inbox tables in the user's database.

``open_store(url)`` picks the driver by scheme, importing it only then (asyncpg is
needed only for a ``postgresql://`` store):

- ``postgresql://user@host:5432/db[?...]`` (also ``postgres://``): PostgreSQL via asyncpg;
- ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://`` (in memory): SQLite.

Both take the bus's options in the query (``bus.store.base.StoreOptions``:
``poll_interval``, ``lease``, ``batch``, ``inbox_retention``, ``housekeeping_interval``,
``pool_max``, ``connect_timeout``); PostgreSQL passes any other query option to asyncpg.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bus.errors import ConfigError
from bus.store.base import (
    OPTION_NAMES,
    OutboxRow,
    OutboxStats,
    Store,
    StoreError,
    StoreOptions,
    StoreTx,
    StoreUnavailable,
)
from bus.url import options, redact, scheme

SCHEMES = ("postgresql", "postgres", "sqlite")


def open_store(url: str) -> Store:
    """A new, unopened Store for ``url``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"bad store URL {url!r}: expected postgresql://user@host/db, sqlite:///file.db "
            "or sqlite:// (in memory)"
        )
    kind = scheme(url)
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in OPTION_NAMES}
    config = options(url, StoreOptions, ours)
    _check(config, url)
    if kind in ("postgresql", "postgres"):
        from bus.store.postgres import PostgresStore

        theirs = urlencode([(k, v) for k, v in query if k not in OPTION_NAMES])
        dsn = urlunsplit(urlsplit(url)._replace(query=theirs))
        return PostgresStore(url, dsn, config)
    if kind == "sqlite":
        from bus.store.sqlite import SqliteStore

        extra = sorted({k for k, _ in query} - OPTION_NAMES)
        if extra:
            raise ConfigError(
                f"unknown option(s) {', '.join(extra)} in store URL {redact(url)!r}; "
                f"sqlite:// takes {', '.join(sorted(OPTION_NAMES))}"
            )
        return SqliteStore(url, config)
    raise ConfigError(
        f"unknown store URL scheme {kind!r} in {redact(url)!r}; known: postgresql://, sqlite://"
    )


def _check(config: StoreOptions, url: str) -> None:
    for name in ("poll_interval", "lease", "inbox_retention", "housekeeping_interval",
                 "connect_timeout"):  # fmt: skip
        if getattr(config, name) <= 0:
            raise ConfigError(f"option {name!r} in {redact(url)!r} must be positive")
    if config.batch < 1 or config.pool_max < 1:
        raise ConfigError(f"options 'batch' and 'pool_max' in {redact(url)!r} must be >= 1")


__all__ = [
    "OutboxRow",
    "OutboxStats",
    "Store",
    "StoreError",
    "StoreOptions",
    "StoreTx",
    "StoreUnavailable",
    "open_store",
]

"""Every SQL statement of the bus's tables, for PostgreSQL and SQLite: the one place to read.

Tables (all named ``bus_*``, in the database's default schema):

- ``bus_outbox``: messages written in a transaction, waiting for a relay to send them.
  ``id`` orders them; a relay leases rows (``lease_owner``, ``lease_until``), sends them,
  then deletes them. ``attempts`` and ``last_error`` show a row that keeps failing.
- ``bus_outbox_dead``: rows that can never be sent (too large, a bad topic), with why.
- ``bus_inbox``: (group, message id) of every message an ``idempotent=True`` handler
  completed, kept for the store's ``inbox_retention``.
- ``bus_schema``: one row, the version of these tables.

Upgrade path: ``MIGRATIONS[dialect][i]`` takes the tables from version ``i`` to ``i + 1``
(index 0 creates them). A bus opening a store runs, in one transaction and under a lock
(so several starting at once do it once), the steps its tables lack, then records
``VERSION``. A change to the tables is a new step appended here, never an edit of an old
one. A store newer than the bus is refused: upgrade the bus everywhere first.
"""

from __future__ import annotations

from typing import Final

VERSION: Final = 1

# -- PostgreSQL (asyncpg: $n parameters) -------------------------------------------------

PG_MIGRATIONS: Final = [
    [
        """CREATE TABLE IF NOT EXISTS bus_outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            topic TEXT NOT NULL,
            msg_key TEXT,
            message_id TEXT NOT NULL,
            correlation_id TEXT,
            content_type TEXT,
            headers BYTEA NOT NULL,
            body BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            lease_owner TEXT,
            lease_until TIMESTAMPTZ,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT)""",
        """CREATE INDEX IF NOT EXISTS bus_outbox_by_key
            ON bus_outbox (topic, msg_key, id) WHERE msg_key IS NOT NULL""",
        """CREATE TABLE IF NOT EXISTS bus_outbox_dead (
            id BIGINT PRIMARY KEY,
            topic TEXT NOT NULL,
            msg_key TEXT,
            message_id TEXT NOT NULL,
            correlation_id TEXT,
            content_type TEXT,
            headers BYTEA NOT NULL,
            body BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            reason TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS bus_inbox (
            grp TEXT NOT NULL,
            message_id TEXT NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (grp, message_id))""",
        "CREATE INDEX IF NOT EXISTS bus_inbox_by_age ON bus_inbox (received_at)",
    ],
]

PG_SCHEMA_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('bus_schema'))"
PG_SCHEMA_TABLE: Final = """CREATE TABLE IF NOT EXISTS bus_schema (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"""
PG_SCHEMA_READ: Final = "SELECT version FROM bus_schema WHERE id = 1"
PG_SCHEMA_WRITE: Final = """INSERT INTO bus_schema (id, version) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET version = excluded.version"""

NOTIFY_CHANNEL: Final = "bus_outbox"

# One statement for any number of rows, in their order (WITH ORDINALITY: ids follow the
# order of publish calls), and a notification that relays hear at commit.
PG_ADD_OUTBOX: Final = """WITH added AS (
    INSERT INTO bus_outbox (topic, msg_key, message_id, correlation_id, content_type,
                            headers, body)
    SELECT t, k, m, c, ct, h, b
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::bytea[], $7::bytea[]) WITH ORDINALITY AS u(t, k, m, c, ct, h, b, n)
    ORDER BY n
    RETURNING 1)
SELECT pg_notify('bus_outbox', '') FROM (SELECT 1 FROM added LIMIT 1) AS any_added"""

PG_RECORD_INBOX: Final = """INSERT INTO bus_inbox (grp, message_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING"""

# Claims are serialized by this lock (held to the claim's commit, a few milliseconds):
# a claim must see every lease taken before it, or two relays could each take rows of
# one key. SKIP LOCKED passes over rows whose deletion by a relay is in flight.
PG_CLAIM_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('bus_outbox_claim'))"
PG_CLAIM: Final = """WITH claimable AS (
    SELECT o.id FROM bus_outbox o
    WHERE (o.lease_until IS NULL OR o.lease_until < now())
      AND NOT EXISTS (
        SELECT 1 FROM bus_outbox p
        WHERE o.msg_key IS NOT NULL AND p.topic = o.topic AND p.msg_key = o.msg_key
          AND p.id < o.id AND p.lease_until >= now())
    ORDER BY o.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
UPDATE bus_outbox o
SET lease_owner = $1, lease_until = now() + make_interval(secs => $3),
    attempts = o.attempts + 1
FROM claimable WHERE o.id = claimable.id
RETURNING o.id, o.topic, o.msg_key, o.message_id, o.correlation_id, o.content_type,
          o.headers, o.body"""

PG_DELETE_SENT: Final = "DELETE FROM bus_outbox WHERE id = ANY($1::bigint[]) AND lease_owner = $2"
PG_MOVE_DEAD: Final = """WITH moved AS (
    DELETE FROM bus_outbox o USING unnest($1::bigint[], $2::text[]) AS d(id, reason)
    WHERE o.id = d.id AND o.lease_owner = $3
    RETURNING o.id, o.topic, o.msg_key, o.message_id, o.correlation_id, o.content_type,
              o.headers, o.body, o.created_at, d.reason)
INSERT INTO bus_outbox_dead (id, topic, msg_key, message_id, correlation_id, content_type,
                             headers, body, created_at, reason)
SELECT * FROM moved ON CONFLICT (id) DO NOTHING"""
PG_RELEASE: Final = """UPDATE bus_outbox o
SET lease_owner = NULL, lease_until = NULL, last_error = r.error
FROM unnest($1::bigint[], $2::text[]) AS r(id, error)
WHERE o.id = r.id AND o.lease_owner = $3"""

PG_OUTBOX_STATS: Final = """SELECT count(*),
    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0),
    (SELECT count(*) FROM bus_outbox_dead) FROM bus_outbox"""

PG_PRUNE_INBOX: Final = """DELETE FROM bus_inbox
    WHERE received_at < now() - make_interval(secs => $1)"""

# -- SQLite (sqlite3: ? parameters; times are UNIX seconds, from the bus's clock) ------------

SQLITE_MIGRATIONS: Final = [
    [
        """CREATE TABLE IF NOT EXISTS bus_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL,
            msg_key TEXT,
            message_id TEXT NOT NULL,
            correlation_id TEXT,
            content_type TEXT,
            headers BLOB NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT)""",
        """CREATE INDEX IF NOT EXISTS bus_outbox_by_key
            ON bus_outbox (topic, msg_key, id) WHERE msg_key IS NOT NULL""",
        """CREATE TABLE IF NOT EXISTS bus_outbox_dead (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            msg_key TEXT,
            message_id TEXT NOT NULL,
            correlation_id TEXT,
            content_type TEXT,
            headers BLOB NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            failed_at REAL NOT NULL,
            reason TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS bus_inbox (
            grp TEXT NOT NULL,
            message_id TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (grp, message_id))""",
        "CREATE INDEX IF NOT EXISTS bus_inbox_by_age ON bus_inbox (received_at)",
    ],
]

SQLITE_SCHEMA_TABLE: Final = """CREATE TABLE IF NOT EXISTS bus_schema (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"""
SQLITE_SCHEMA_READ: Final = "SELECT version FROM bus_schema WHERE id = 1"
SQLITE_SCHEMA_WRITE: Final = "INSERT OR REPLACE INTO bus_schema (id, version) VALUES (1, ?)"

SQLITE_ADD_OUTBOX: Final = """INSERT INTO bus_outbox (topic, msg_key, message_id,
    correlation_id, content_type, headers, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""

SQLITE_RECORD_INBOX: Final = """INSERT OR IGNORE INTO bus_inbox (grp, message_id, received_at)
    VALUES (?, ?, ?)"""

# Run inside BEGIN IMMEDIATE, which serializes claims as PostgreSQL's lock does.
# ?1 owner, ?2 now, ?3 lease seconds, ?4 limit.
SQLITE_CLAIM: Final = """UPDATE bus_outbox
SET lease_owner = ?1, lease_until = ?2 + ?3, attempts = attempts + 1
WHERE id IN (
    SELECT o.id FROM bus_outbox o
    WHERE (o.lease_until IS NULL OR o.lease_until < ?2)
      AND NOT EXISTS (
        SELECT 1 FROM bus_outbox p
        WHERE o.msg_key IS NOT NULL AND p.topic = o.topic AND p.msg_key = o.msg_key
          AND p.id < o.id AND p.lease_until >= ?2)
    ORDER BY o.id
    LIMIT ?4)
RETURNING id, topic, msg_key, message_id, correlation_id, content_type, headers, body"""

SQLITE_DELETE_SENT: Final = "DELETE FROM bus_outbox WHERE id = ? AND lease_owner = ?"
# ?1 id, ?2 owner, ?3 now, ?4 reason.
SQLITE_COPY_DEAD: Final = """INSERT OR IGNORE INTO bus_outbox_dead (id, topic, msg_key,
    message_id, correlation_id, content_type, headers, body, created_at, failed_at, reason)
SELECT id, topic, msg_key, message_id, correlation_id, content_type, headers, body,
       created_at, ?3, ?4
FROM bus_outbox WHERE id = ?1 AND lease_owner = ?2"""
SQLITE_DELETE_DEAD: Final = "DELETE FROM bus_outbox WHERE id = ?1 AND lease_owner = ?2"
SQLITE_RELEASE: Final = """UPDATE bus_outbox SET lease_owner = NULL, lease_until = NULL,
    last_error = ?3 WHERE id = ?1 AND lease_owner = ?2"""

SQLITE_PRUNE_INBOX: Final = "DELETE FROM bus_inbox WHERE received_at < ?"

# ?1 now.
SQLITE_OUTBOX_STATS: Final = """SELECT count(*), COALESCE(?1 - min(created_at), 0),
    (SELECT count(*) FROM bus_outbox_dead) FROM bus_outbox"""

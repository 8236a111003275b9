"""b.transaction(): what commits is published once, what rolls back leaves nothing, on
both stores; enlisting in a caller's asyncpg transaction; clear errors for misuse."""

from __future__ import annotations

import anyio
import asyncpg
import msgspec
import pytest

import bus
from bus.store import StoreError
from tests.conformance.helpers import unique

from .helpers import Step, count, is_pg, query


def _ledger_sql(url: str) -> str:
    return "CREATE TABLE ledger (n INTEGER NOT NULL)"


async def test_rollback_leaves_nothing_and_commit_publishes_once(
    store_url: str, memory_url: str
) -> None:
    topic = unique("tx")
    got: list[Step] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic, concurrency=1)
    async def on_step(step: Step) -> None:
        got.append(step)

    insert = (
        "INSERT INTO ledger (n) VALUES ($1)"
        if is_pg(store_url)
        else ("INSERT INTO ledger (n) VALUES (?)")
    )
    async with bus.Bus(memory_url, services=[consumer], store=store_url) as b:
        async with b.transaction() as tx:
            await tx.connection.execute(_ledger_sql(store_url))
        with pytest.raises(RuntimeError):
            async with b.transaction() as tx:
                await tx.connection.execute(insert, 1)
                await tx.publish(topic, Step("k", 1), key="k")
                raise RuntimeError("rolled back")
        async with b.transaction() as tx:
            await tx.connection.execute(insert, 2)
            first = await tx.publish(topic, Step("k", 2), key="k")
            second = await tx.publish(topic, Step("k", 3), key="k")
        assert first != second
        with anyio.fail_after(10):
            while len(got) < 2:
                await anyio.sleep(0.005)
            while await count(store_url, "bus_outbox"):
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)  # anything more (a duplicate, the rolled back one) shows now
    assert got == [Step("k", 2), Step("k", 3)], "in order, once each, nothing rolled back"
    assert await query(store_url, "SELECT n FROM ledger") == [(2,)]


class ProviderDown(ConnectionError):
    """An application's own error that happens to be an OSError (as the shop's
    TransientPaymentError is)."""


async def test_an_oserror_of_the_blocks_own_rolls_back_and_passes_through(
    store_url: str, memory_url: str
) -> None:
    """Only a lost connection becomes StoreUnavailable: a ConnectionError the caller's code
    raises on a live one reaches the caller as itself (a responder's caller then sees its
    type, e.g. a transient error it retries, not "the store cannot be reached")."""
    topic = unique("tx")
    async with bus.Bus(memory_url, store=store_url) as b:
        with pytest.raises(ProviderDown, match="no answer"):
            async with b.transaction() as tx:
                await tx.publish(topic, Step("k", 1), key="k")
                raise ProviderDown("no answer")
        async with b.transaction() as tx:  # the store is fine
            await tx.publish(topic, Step("k", 2), key="k")
        with anyio.fail_after(10):
            while await count(store_url, "bus_outbox"):
                await anyio.sleep(0.01)


async def test_enlisted_in_callers_transaction_follows_its_commit(
    pg_url: str, memory_url: str
) -> None:
    """The caller commits or rolls back; the relay hears the commit (NOTIFY) at once,
    long before its polling would look (poll_interval=30)."""
    topic = unique("tx")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    store = f"{pg_url}&poll_interval=30"
    conn = await asyncpg.connect(pg_url)
    try:
        async with bus.Bus(memory_url, services=[consumer], store=store) as b:
            await anyio.sleep(0.2)  # the relay's first look, which finds nothing, is over
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    async with b.transaction(connection=conn) as tx:
                        assert tx.connection is conn
                        await tx.publish(topic, Step("k", 1))
                    raise RuntimeError("the caller rolls back")
            assert await count(pg_url, "bus_outbox") == 0
            async with conn.transaction():
                async with b.transaction(connection=conn) as tx:
                    await tx.publish(topic, Step("k", 2))
                # not committed yet: nothing may leave
                await anyio.sleep(0.3)
                assert got == []
            with anyio.fail_after(5):
                while got != [2]:
                    await anyio.sleep(0.005)
            # Not in a transaction: the block is one of its own.
            async with b.transaction(connection=conn) as tx:
                await tx.publish(topic, Step("k", 3))
            with anyio.fail_after(5):
                while got != [2, 3]:
                    await anyio.sleep(0.005)
    finally:
        await conn.close()


async def test_misuse_is_a_clear_error(sqlite_url: str, memory_url: str) -> None:
    with pytest.raises(bus.ConfigError, match="unknown store URL scheme"):
        bus.Bus(memory_url, store="mysql://localhost/x")
    with pytest.raises(bus.ConfigError, match="must be positive"):
        bus.Bus(memory_url, store=f"{sqlite_url}?lease=0")
    with pytest.raises(bus.ConfigError, match="unknown option"):
        bus.Bus(memory_url, store=f"{sqlite_url}?leese=3")
    lonely = bus.Service(unique("g"))

    @lonely.subscribe("t.x", idempotent=True)
    async def handle(step: Step) -> None: ...

    with pytest.raises(bus.ConfigError, match="needs a store"):
        bus.Bus(memory_url, services=[lonely])
    async with bus.Bus(memory_url) as plain:
        with pytest.raises(bus.ConfigError, match="has no store"):
            plain.transaction()
    async with bus.Bus(memory_url, store=sqlite_url) as b:
        tx = b.transaction()
        with pytest.raises(bus.BusError, match="not open"):
            await tx.publish("t.x", Step("k", 1))
        with pytest.raises(bus.BusError, match="already open"):
            async with b.transaction(), b.transaction():
                pass
        with pytest.raises(bus.ConfigError, match="enlists in a PostgreSQL"):
            async with b.transaction(connection=object()):
                pass
        async with b.transaction() as tx:
            with pytest.raises(bus.ConfigError, match="topic"):
                await tx.publish("bad topic!", Step("k", 1))
            with pytest.raises(bus.MessageTooLarge):
                await tx.publish("t.x", b"x" * (2 * 1024 * 1024))
        assert await count(sqlite_url, "bus_outbox") == 0


async def test_tables_are_made_once_and_a_newer_schema_is_refused(
    store_url: str, memory_url: str
) -> None:
    async with bus.Bus(memory_url, store=store_url):
        pass
    async with bus.Bus(memory_url, store=store_url):  # again: nothing to do
        pass
    assert await query(store_url, "SELECT version FROM bus_schema") == [(1,)]
    await query(store_url, "UPDATE bus_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        async with bus.Bus(memory_url, store=store_url):
            pass


async def test_enlisting_takes_only_known_connections(pg_url: str, memory_url: str) -> None:
    async with bus.Bus(memory_url, store=pg_url) as b:
        with pytest.raises(bus.ConfigError, match="asyncpg connection"):
            async with b.transaction(connection=msgspec.Struct):
                pass

"""idempotent=True: a message id is handled once in effect per group; a failing handler
rolls back its writes and its inbox row together; rows past retention are removed."""

from __future__ import annotations

import anyio
import pytest

import bus
from bus.message import Message
from tests.conformance.helpers import unique

from .helpers import Step, count, is_pg, query


def _insert(url: str) -> str:
    return (
        "INSERT INTO ledger (n) VALUES ($1)" if is_pg(url) else "INSERT INTO ledger (n) VALUES (?)"
    )


async def _make_ledger(b: bus.Bus) -> None:
    async with b.transaction() as tx:
        await tx.connection.execute("CREATE TABLE ledger (n INTEGER NOT NULL)")


def _copy(message_id: str, step: Step) -> Message:
    """What a relay sending one outbox row twice puts on the broker: the same id twice."""
    import msgspec

    return Message(id=message_id, body=msgspec.json.encode(step), key=step.key)


@pytest.mark.parametrize("adapter", ["memory", "rabbitmq", "kafka"])
async def test_a_message_sent_twice_takes_effect_once(
    adapter: str, pg_url: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{adapter}_url")
    topic, group = unique("inbox"), unique("g")
    calls: list[int] = []
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=1, idempotent=True)
    async def on_step(step: Step, ctx: bus.Context) -> None:
        calls.append(step.seq)
        await ctx.transaction.connection.execute(_insert(pg_url), step.seq)

    async with bus.Bus(url, store=pg_url) as setup:
        await _make_ledger(setup)
    async with bus.Bus(url, services=[service], store=pg_url) as b:
        for seq in (1, 1, 2, 2, 3):
            await b.transport.publish(topic, _copy(f"m-{topic}-{seq}", Step("k", seq)))
        with anyio.fail_after(20):
            while await count(pg_url, "bus_inbox") < 3 or 3 not in calls:
                await anyio.sleep(0.01)
        await anyio.sleep(0.3)  # a late duplicate would run now
    assert sorted(calls) == [1, 2, 3], "a duplicate never reaches the handler"
    assert sorted(r[0] for r in await query(pg_url, "SELECT n FROM ledger")) == [1, 2, 3]


async def test_a_failing_handler_rolls_back_its_writes_its_publish_and_its_inbox_row(
    store_url: str, memory_url: str
) -> None:
    topic, out, group = unique("inbox"), unique("out"), unique("g")
    attempts: list[int] = []
    published: list[int] = []
    service = bus.Service(group)
    watcher = bus.Service(unique("w"))

    @service.subscribe(topic, idempotent=True, retry=bus.Retry(attempts=3, backoff=0.01))
    async def on_step(step: Step, ctx: bus.Context) -> None:
        attempts.append(ctx.attempt)
        await ctx.transaction.connection.execute(_insert(store_url), step.seq)
        await ctx.transaction.publish(out, Step("k", ctx.attempt))
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails after writing and publishing")

    @watcher.subscribe(out)
    async def on_out(step: Step, ctx: bus.Context) -> None:
        assert ctx.correlation_id == "conversation-1", "the conversation is carried on"
        published.append(step.seq)

    async with bus.Bus(memory_url, services=[service, watcher], store=store_url) as b:
        await _make_ledger(b)
        await b.publish(topic, Step("k", 7), correlation_id="conversation-1")
        with anyio.fail_after(10):
            while published != [2]:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
    assert attempts == [1, 2]
    assert published == [2], "the failed attempt's publish never left"
    assert await query(store_url, "SELECT n FROM ledger") == [(7,)], "written once"
    assert await count(store_url, "bus_inbox") == 1


async def test_inbox_rows_past_retention_are_removed(store_url: str, memory_url: str) -> None:
    topic, group = unique("inbox"), unique("g")
    calls: list[int] = []
    service = bus.Service(group)

    @service.subscribe(topic, idempotent=True, concurrency=1)
    async def on_step(step: Step) -> None:
        calls.append(step.seq)

    sep = "&" if "?" in store_url else "?"
    store = f"{store_url}{sep}inbox_retention=3600&housekeeping_interval=0.1"
    async with bus.Bus(memory_url, store=store_url):  # the tables
        pass
    # Recorded two hours ago, and just now.
    ago = "now() - $3 * interval '1 second'" if is_pg(store_url) else "strftime('%s') - $3"
    add = f"INSERT INTO bus_inbox (grp, message_id, received_at) VALUES ($1, $2, {ago})"
    await query(store_url, add, group, "old", 7200)
    await query(store_url, add, group, "new", 0)
    async with bus.Bus(memory_url, services=[service], store=store) as b:
        with anyio.fail_after(10):
            while await count(store_url, "bus_inbox") != 1:
                await anyio.sleep(0.02)
        # Past retention, an id is news again; within it, a duplicate: the rows decide.
        await b.transport.publish(topic, _copy("old", Step("k", 1)))
        await b.transport.publish(topic, _copy("new", Step("k", 2)))
        await b.transport.publish(topic, _copy("marker", Step("k", 3)))
        with anyio.fail_after(10):
            while 3 not in calls:
                await anyio.sleep(0.01)
    assert calls == [1, 3]


async def test_ctx_transaction_outside_an_idempotent_handler_is_a_clear_error(
    memory_url: str,
) -> None:
    topic = unique("inbox")
    errors: list[str] = []
    service = bus.Service(unique("g"))

    @service.subscribe(topic)
    async def on_step(step: Step, ctx: bus.Context) -> None:
        try:
            ctx.transaction  # noqa: B018
        except bus.BusError as exc:
            errors.append(str(exc))

    async with bus.Bus(memory_url, services=[service]) as b:
        await b.publish(topic, Step("k", 1))
        with anyio.fail_after(10):
            while not errors:
                await anyio.sleep(0.01)
    assert "idempotent=True" in errors[0]

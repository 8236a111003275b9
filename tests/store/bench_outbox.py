"""What the outbox and the inbox cost, measured side by side in one run (RabbitMQ and
PostgreSQL on this machine). Not a test (no ``test_`` prefix): run it by hand,

    .venv/bin/python -m tests.store.bench_outbox [--messages 3000] [--producers 16] [--rounds 3]

Cases, each run ``--rounds`` times, interleaved (A, B, C, A, B, C...) so drift on a
shared machine hits every side alike; the table shows the median of the rounds:

- ``publish``: ``b.publish`` of N messages from P tasks (each its own key), confirmed.
  Its latency: the call to its return (the broker's confirm).
- ``outbox``: each message in its own ``b.transaction()`` (the outbox insert and the
  commit), sent by the bus's relay with confirms. Latency: from the end of the
  transaction block (the commit included) to the broker's confirm, seen through the
  bus's relay seam (``Bus._send_relayed``).
- ``raw outbox``: the same work by hand: asyncpg (a pool of the same size) inserting a
  row per transaction, and a relay loop that takes up to 100 rows with ``FOR UPDATE
  SKIP LOCKED``, publishes them with aio-pika confirms (in order per key, keys
  concurrently), deletes them and commits; woken in-process at commit, as the bus's is.
  ``raw outbox + NOTIFY``: the same, its insert also notifying at commit (in the same
  statement, as the bus's does) so relays of other processes would hear of the row.
- ``..., 100/s``: the same from one task paced at 100 messages/s (N/15 of them): the
  latency of a message when nothing queues ahead of it. With P tasks at full speed the
  producers outrun any relay (rows of one key leave one confirm after another), so that
  latency is mostly the time a row waits in the outbox behind the others.
- ``consume plain`` / ``consume idempotent``: N messages already queued, handled by an
  empty handler at concurrency 16, without and with ``idempotent=True`` (the inbox row
  and its transaction); ``consume + write``: a handler writing one row in a transaction
  of its own (``ctx.open_transaction()``), against the idempotent handler writing the
  same row in ``ctx.transaction``: the inbox row's own cost. Rate: first to last handled.

The database is one of its own (created, then dropped); the RabbitMQ objects live on an
exchange of their own, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import msgspec

import bus
from bus.message import Message

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONCURRENCY = 16
PACED_RATE = 100  # messages/s from one producer: a light load, for latency alone
PACED = {side: f"{side}, {PACED_RATE}/s" for side in ("publish", "outbox", "raw outbox")}


class Order(msgspec.Struct):
    order_id: str
    customer: str
    total_cents: int
    lines: list[str]


def payload(i: int) -> Order:
    return Order(f"o-{i}", f"c-{i % 97}", 990 + i, ["widget", "gadget"])


class Result(msgspec.Struct):
    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None


def _latencies(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return (
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


class WatchedBus(bus.Bus):
    """A Bus noting when its relay's sends were confirmed (the seam for this)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirmed: dict[str, float] = {}
        self.all_confirmed = asyncio.Event()
        self.expect = 0

    async def _send_relayed(self, topic: str, message: Message) -> None:
        await super()._send_relayed(topic, message)
        self.confirmed[message.id] = time.perf_counter()
        if len(self.confirmed) >= self.expect:
            self.all_confirmed.set()


async def _producers(
    n: int, producers: int, one: Callable[[int, str], Awaitable[None]], pace: float = 0.0
) -> None:
    """``producers`` tasks sending ``n`` messages in all, each task on a key of its own;
    with ``pace``, each task starts its i-th message no sooner than i * pace seconds in."""
    start = time.perf_counter()

    async def task(p: int) -> None:
        for k, i in enumerate(range(p, n, producers)):
            if pace:
                await asyncio.sleep(max(0.0, start + k * pace - time.perf_counter()))
            await one(i, f"k{p}")

    await asyncio.gather(*(task(p) for p in range(producers)))


# -- publishing ------------------------------------------------------------------------


async def plain_publish(url: str, topic: str, n: int, producers: int, pace: float = 0.0) -> Result:
    took: list[float] = []
    async with bus.Bus(url) as b:

        async def one(i: int, key: str) -> None:
            t0 = time.perf_counter()
            await b.publish(topic, payload(i), key=key)
            took.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await _producers(n, producers, one, pace)
        wall = time.perf_counter() - start
    return Result(n / wall, *_latencies(took))


async def outbox_publish(
    url: str, store: str, topic: str, n: int, producers: int, pace: float = 0.0
) -> Result:
    committed: dict[str, float] = {}
    async with WatchedBus(url, store=store) as b:
        b.expect = n

        async def one(i: int, key: str) -> None:
            async with b.transaction() as tx:
                message_id = await tx.publish(topic, payload(i), key=key)
                committed[message_id] = time.perf_counter()  # the commit comes next

        start = time.perf_counter()
        await _producers(n, producers, one, pace)
        await asyncio.wait_for(b.all_confirmed.wait(), 120)
        wall = time.perf_counter() - start
        took = [b.confirmed[m] - t for m, t in committed.items()]
    return Result(n / wall, *_latencies(took))


RAW_TABLE = """CREATE TABLE IF NOT EXISTS raw_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic TEXT NOT NULL,
    msg_key TEXT, message_id TEXT NOT NULL, body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""


RAW_INSERT = "INSERT INTO raw_outbox (topic, msg_key, message_id, body) VALUES ($1, $2, $3, $4)"
# As the bus does, so relays in other processes hear of the row at commit.
RAW_INSERT_NOTIFY = f"""WITH added AS ({RAW_INSERT} RETURNING 1)
    SELECT pg_notify('raw_outbox', '') FROM added"""


async def raw_outbox(
    dsn: str,
    exchange_name: str,
    topic: str,
    n: int,
    producers: int,
    pace: float = 0.0,
    *,
    notify: bool = False,
) -> Result:
    """A hand-written asyncpg outbox and relay doing the bus's work (see the module)."""
    insert = RAW_INSERT_NOTIFY if notify else RAW_INSERT
    encode = msgspec.json.Encoder().encode
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    conn = await aio_pika.connect(AMQP)
    committed: dict[str, float] = {}
    confirmed: dict[str, float] = {}
    wake, done = asyncio.Event(), asyncio.Event()
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        await pool.execute(RAW_TABLE)

        async def send_key(rows: list[Any]) -> None:
            for row in rows:  # in order per key
                await exchange.publish(
                    aio_pika.Message(
                        row["body"],
                        content_type="application/json",
                        message_id=row["message_id"],
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={"bus-payload-type": "Order"},
                    ),
                    row["topic"],
                )
                confirmed[row["message_id"]] = time.perf_counter()

        async def relay() -> None:
            while len(confirmed) < n:
                async with pool.acquire() as c, c.transaction():
                    rows = await c.fetch(
                        "SELECT id, topic, msg_key, message_id, body FROM raw_outbox "
                        "ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED"
                    )
                    if rows:
                        by_key: dict[Any, list[Any]] = defaultdict(list)
                        for row in rows:
                            by_key[row["msg_key"] or row["id"]].append(row)
                        await asyncio.gather(*(send_key(v) for v in by_key.values()))
                        await c.execute(
                            "DELETE FROM raw_outbox WHERE id = ANY($1::bigint[])",
                            [r["id"] for r in rows],
                        )
                if not rows:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), 1.0)
            done.set()

        async def one(i: int, key: str) -> None:
            message_id = uuid.uuid4().hex
            async with pool.acquire() as c, c.transaction():
                await c.execute(insert, topic, key, message_id, encode(payload(i)))
                committed[message_id] = time.perf_counter()
            wake.set()

        start = time.perf_counter()
        relay_task = asyncio.create_task(relay())
        await _producers(n, producers, one, pace)
        await asyncio.wait_for(done.wait(), 120)
        wall = time.perf_counter() - start
        await relay_task
        took = [confirmed[m] - t for m, t in committed.items()]
    finally:
        await conn.close()
        await pool.close()
    return Result(n / wall, *_latencies(took))


# -- consuming ---------------------------------------------------------------------------


async def consume(
    url: str, store: str, topic: str, n: int, *, idempotent: bool, write: bool
) -> Result:
    """N messages queued for a new group, then handled; the rate from first to last."""
    group = f"g{uuid.uuid4().hex[:8]}"
    service = bus.Service(group)
    times: list[float] = []
    finished = asyncio.Event()

    def handled() -> None:
        times.append(time.perf_counter())
        if len(times) >= n:
            finished.set()

    if idempotent:

        @service.subscribe(topic, idempotent=True, concurrency=CONCURRENCY)
        async def on_idempotent(order: Order, ctx: bus.Context) -> None:
            if write:
                await ctx.transaction.connection.execute(
                    "INSERT INTO effects (order_id) VALUES ($1)", order.order_id
                )
            handled()

    else:

        @service.subscribe(topic, concurrency=CONCURRENCY)
        async def on_plain(order: Order, ctx: bus.Context) -> None:
            if write:
                async with ctx.open_transaction() as tx:
                    await tx.connection.execute(
                        "INSERT INTO effects (order_id) VALUES ($1)", order.order_id
                    )
            handled()

    async with bus.Bus(url, services=[service], store=store):  # the group's queue, bound
        pass
    async with bus.Bus(url) as b:
        await b.publish_many(topic, [payload(i) for i in range(n)])
    async with bus.Bus(url, services=[service], store=store):
        await asyncio.wait_for(finished.wait(), 120)
    return Result((n - 1) / (times[-1] - times[0]))


# -- the run -------------------------------------------------------------------------------


async def main(n: int, producers: int, rounds: int) -> None:
    tag = uuid.uuid4().hex[:8]
    database, exchange = f"bus_bench_{tag}", f"bench-{tag}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
    url = f"{AMQP}?exchange={exchange}"
    topic = "bench.orders"
    try:
        setup = await asyncpg.connect(dsn)
        await setup.execute("CREATE TABLE effects (order_id TEXT NOT NULL)")
        await setup.close()
        drain = bus.Service("sink")  # every published message lands in one queue

        @drain.subscribe(topic)
        async def sink(order: Order) -> None: ...

        async with bus.Bus(url, services=[drain], store=dsn):  # tables, exchange, queue
            pass
        few, pace = max(100, n // 15), 1 / PACED_RATE
        cases: dict[str, Callable[[], Awaitable[Result]]] = {
            "publish": lambda: plain_publish(url, topic, n, producers),
            "outbox": lambda: outbox_publish(url, dsn, topic, n, producers),
            "raw outbox": lambda: raw_outbox(dsn, exchange, topic, n, producers),
            "raw outbox + NOTIFY": lambda: raw_outbox(
                dsn, exchange, topic, n, producers, notify=True
            ),
            PACED["publish"]: lambda: plain_publish(url, topic, few, 1, pace),
            PACED["outbox"]: lambda: outbox_publish(url, dsn, topic, few, 1, pace),
            PACED["raw outbox"]: lambda: raw_outbox(dsn, exchange, topic, few, 1, pace),
            "consume plain": lambda: consume(url, dsn, topic, n, idempotent=False, write=False),
            "consume idempotent": lambda: consume(url, dsn, topic, n, idempotent=True, write=False),
            "consume + write": lambda: consume(url, dsn, topic, n, idempotent=False, write=True),
            "idempotent + write": lambda: consume(url, dsn, topic, n, idempotent=True, write=True),
        }
        runs: dict[str, list[Result]] = defaultdict(list)
        for r in range(rounds):
            for name, case in cases.items():
                runs[name].append(await case())
                print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
            await _purge(exchange)
        _report(runs, n, producers, rounds)
    finally:
        await _delete_exchange(exchange)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


def _median(results: list[Result], field: str) -> float | None:
    values = [getattr(r, field) for r in results if getattr(r, field) is not None]
    return statistics.median(values) if values else None


def _report(runs: dict[str, list[Result]], n: int, producers: int, rounds: int) -> None:
    def rate(name: str) -> float:
        value = _median(runs[name], "rate")
        assert value is not None
        return value

    print(f"\n{n} messages, {producers} producer tasks, median of {rounds} rounds\n")
    print("| case | messages/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, results in runs.items():
        p50, p99 = _median(results, "p50_ms"), _median(results, "p99_ms")
        cells = [f"{p:.1f}" if p is not None else "" for p in (p50, p99)]
        shown = "(paced)" if name in PACED.values() else f"{rate(name):,.0f}"
        print(f"| {name} | {shown} | {cells[0]} | {cells[1]} |")
    print()
    print(f"- outbox / publish: {rate('outbox') / rate('publish'):.2f}")
    ours, raw = (_median(runs[k], "p50_ms") for k in (PACED["outbox"], PACED["raw outbox"]))
    print(f"- at {PACED_RATE}/s, p50 latency outbox / raw outbox: {(ours or 0) / (raw or 1):.2f}")
    for raw in ("raw outbox", "raw outbox + NOTIFY"):
        paired = [a.rate / b.rate for a, b in zip(runs["outbox"], runs[raw], strict=True)]
        print(f"- outbox / {raw} (target >= 0.85): {rate('outbox') / rate(raw):.2f}; "
              f"round by round {', '.join(f'{p:.2f}' for p in paired)}, "
              f"median {statistics.median(paired):.2f}")  # fmt: skip
    for plain, inbox in (("consume plain", "consume idempotent"),
                         ("consume + write", "idempotent + write")):  # fmt: skip
        cost = (1 / rate(inbox) - 1 / rate(plain)) * 1e6
        print(f"- {inbox} / {plain}: {rate(inbox) / rate(plain):.2f} "
              f"(the inbox: +{cost:.0f} us per message at concurrency {CONCURRENCY})")  # fmt: skip


async def _purge(exchange: str) -> None:
    """Empty this run's queues between rounds, so each round starts alike."""
    conn = await aio_pika.connect(AMQP)
    try:
        channel = await conn.channel()
        for name in await _queues(exchange):
            queue = await channel.get_queue(name, ensure=False)
            await queue.purge()
    finally:
        await conn.close()


async def _queues(exchange: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "list_queues", "name", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return [q for q in out.decode().split() if q.startswith(f"{exchange}:")]


async def _delete_exchange(exchange: str) -> None:
    conn = await aio_pika.connect(AMQP)
    try:
        channel = await conn.channel()
        for name in await _queues(exchange):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--producers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.producers, args.rounds))

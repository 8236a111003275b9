"""What is measured. Each scenario takes a Context (one adapter's sides and the plan)
and returns Results. Every point runs ``plan.rounds`` rounds; a round runs every side
once, one after another, and the side that goes first rotates from round to round, so a
noisy neighbour on the machine hits all sides alike. A Result keeps every round; the
report gives the median of the per-round ratios with its spread."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.suite import procs, telemetry
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import Result, io_1ms, noop, payloads
from benchmarks.suite.plan import Plan
from benchmarks.suite.track import percentiles

Tick = Callable[[str], None]
CASE_TIMEOUT = 600.0  # one side's run of one point, set-up included: a hang fails the case
Values = dict[str, list[Any]]


@dataclass
class Context:
    adapter: str
    plan: Plan
    sides: dict[str, Any]  # role ("raw", "bus", a peer's role) -> side
    tick: Tick  # progress: one call per side per round
    notes: list[str]
    errors: list[str] = field(default_factory=list)

    @property
    def bus(self) -> Any:
        return self.sides["bus"]

    def order(self, round_: int) -> list[str]:
        roles = list(self.sides)
        k = round_ % len(roles)
        return roles[k:] + roles[:k]

    async def each(
        self, fn: Callable[[Any], Awaitable[Any]], label: str, roles: list[str] | None = None
    ) -> Values:
        """Run ``fn`` on every side (or ``roles``), ``rounds`` times, interleaved; every
        round's value per role, None where a peer declined (NotImplementedError), failed
        or was too slow for the case's deadline (its figure is lost, not the others')."""
        runs: Values = {role: [] for role in self.sides if roles is None or role in roles}
        declined: set[str] = set()
        for round_ in range(self.plan.rounds):
            for role in self.order(round_):
                if role not in runs:
                    continue
                value = None
                if role not in declined:
                    try:
                        value = await asyncio.wait_for(fn(self.sides[role]), CASE_TIMEOUT)
                    except NotImplementedError as exc:
                        if role in ("raw", "bus"):
                            raise
                        declined.add(role)
                        self.note(
                            f"{self.adapter}: {self.sides[role].name} left out of {label}: {exc}"
                        )
                    except Exception as exc:
                        if role in ("raw", "bus"):
                            raise
                        # A peer that fails or overruns the case's deadline costs its
                        # own figure, not the bus's and the raw client's.
                        declined.add(role)
                        what = (
                            "did not finish in time"
                            if isinstance(exc, TimeoutError)
                            else (f"failed: {type(exc).__name__}: {exc}")
                        )
                        self.note(f"{self.adapter}: {self.sides[role].name} {label} {what}")
                runs[role].append(value)
                self.tick(f"{self.adapter} {label} round {round_ + 1} {role}")
        return {role: values for role, values in runs.items() if any(v is not None for v in values)}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def result(self, scenario: str, case: str, param: float | str, unit: str, rounds: Values,
               **extra: Any) -> Result:  # fmt: skip
        names = {role: self.sides[role].name for role in rounds if role in self.sides}
        return Result(scenario, self.adapter, case, param, unit, rounds, names, extra=extra)


def _topic(kind: str) -> str:
    return f"{kind}.{uid()}"


async def publish_one(ctx: Context) -> list[Result]:
    """Many callers at once, each awaiting one publish (confirmed / acks=all) at a time."""
    plan = ctx.plan
    items = payloads(plan.publish_n[ctx.adapter], plan.size)
    got = await ctx.each(lambda s: s.publish_one(_topic("pub"), items, plan.callers), "publish_one")
    case = f"{plan.callers} callers, {plan.size} B"
    return [ctx.result("publish_one", case, plan.callers, "msg/s", got, messages=len(items))]


async def publish_batch(ctx: Context) -> list[Result]:
    """Batches of ``plan.batch`` (the bus's publish_many), each confirmed before the next."""
    plan = ctx.plan
    items = payloads(plan.publish_n[ctx.adapter], plan.size)
    got = await ctx.each(
        lambda s: s.publish_batch(_topic("pubb"), items, plan.batch), "publish_batch"
    )
    case = f"batches of {plan.batch}, {plan.size} B"
    return [ctx.result("publish_batch", case, plan.batch, "msg/s", got, messages=len(items))]


async def consume(ctx: Context) -> list[Result]:
    """Decode, no-op handler, ack/commit after it, the bus's default concurrency."""
    n = ctx.plan.consume_n[ctx.adapter]
    size = ctx.plan.size

    async def one(side: Any) -> float:
        return float(await side.consume(ConsumeJob({_topic("con"): payloads(n, size)}, None, noop)))

    job = ConsumeJob({}, None, noop)
    got = await ctx.each(one, "consume")
    case = f"concurrency {job.workers} (default), {size} B"
    return [ctx.result("consume", case, job.workers, "msg/s", got, messages=n)]


async def sizes(ctx: Context) -> list[Result]:
    """Publish (callers) and consume again at each of ``plan.sizes``."""
    out = []
    plan = ctx.plan
    for size in plan.sizes:
        items = payloads(plan.publish_n[ctx.adapter], size)
        got = await ctx.each(lambda s, i=items: s.publish_one(_topic("pub"), i, plan.callers),
                             f"sizes publish {size} B")  # fmt: skip
        out.append(ctx.result("sizes", f"publish_one {size} B", size, "msg/s", got))
        n = plan.consume_n[ctx.adapter]

        async def one(side: Any, size: int = size, n: int = n) -> float:
            job = ConsumeJob({_topic("con"): payloads(n, size)}, None, noop)
            return float(await side.consume(job))

        got = await ctx.each(one, f"sizes consume {size} B")
        out.append(ctx.result("sizes", f"consume {size} B", size, "msg/s", got))
    return out


async def concurrency(ctx: Context) -> list[Result]:
    """The 1 ms handler at each handler concurrency (prefetch / workers = concurrency on
    the raw side)."""
    out = []
    plan = ctx.plan
    for c in plan.concurrencies[ctx.adapter]:
        n = max(plan.concurrency_min, c * plan.concurrency_per_level)
        n = min(plan.concurrency_cap[ctx.adapter], n)

        async def one(side: Any, c: int = c, n: int = n) -> float:
            job = ConsumeJob({_topic("conc"): payloads(n, plan.size)}, c, io_1ms)
            return float(await side.consume(job))

        got = await ctx.each(one, f"concurrency {c}")
        out.append(ctx.result("concurrency", f"concurrency {c}", c, "msg/s", got, messages=n))
    return out


async def processes(ctx: Context) -> list[Result]:
    if ctx.adapter == "memory":
        ctx.note("processes: not on memory (an embedded broker lives in one process)")
        return []
    out = []
    for count in ctx.plan.processes:
        items = payloads(ctx.plan.processes_n[ctx.adapter], ctx.plan.size)

        async def one(side: Any, count: int = count, items: list[Any] = items) -> float:
            rate, _, _ = await procs.run(side.url, side.declares, items, count, 16, 120.0)
            return rate

        got = await ctx.each(one, f"processes {count}", roles=["bus"])
        out.append(ctx.result("processes", f"{count} process(es)", count, "msg/s", got,
                              concurrency=16))  # fmt: skip
    return out


async def partitions(ctx: Context) -> list[Result]:
    if ctx.adapter != "kafka":
        return []
    out = []
    for p in ctx.plan.partitions:

        async def one(side: Any, p: int = p) -> float:
            job = ConsumeJob({_topic("part"): payloads(ctx.plan.partitions_n, ctx.plan.size)},
                             64, io_1ms, partitions=p)  # fmt: skip
            return float(await side.consume(job))

        got = await ctx.each(one, f"partitions {p}")
        out.append(ctx.result("partitions", f"{p} partition(s)", p, "msg/s", got, concurrency=64))
    return out


async def topics(ctx: Context) -> list[Result]:
    out = []
    total = ctx.plan.topics_n[ctx.adapter]
    for t in ctx.plan.topics[ctx.adapter]:
        per = max(1, 64 // t)

        async def one(side: Any, t: int = t, per: int = per) -> float:
            if side.name.startswith("FastStream") and t > 100:
                raise NotImplementedError("over 100 topics, to keep the run short")
            prefix = _topic("top")
            loads = {f"{prefix}.{i}": payloads(total // t, ctx.plan.size) for i in range(t)}
            return float(await side.consume(ConsumeJob(loads, per, noop, timeout=300.0)))

        got = await ctx.each(one, f"topics {t}")
        out.append(ctx.result("topics", f"{t} topic(s)", t, "msg/s", got,
                              concurrency_per_topic=per, messages=total // t * t))  # fmt: skip
    return out


async def latency(ctx: Context) -> list[Result]:
    rate = ctx.plan.latency_rate[ctx.adapter]
    n = ctx.plan.latency_n[ctx.adapter]

    async def one(side: Any) -> dict[str, float]:
        return percentiles(await side.latency(payloads(n, ctx.plan.size), rate))

    got = await ctx.each(one, "latency")
    out = []
    for name in ("p50", "p99", "p99.9"):
        picked = {role: [q and q[name] for q in qs] for role, qs in got.items()}
        result = ctx.result("latency", name, name, "ms", picked, rate=rate, messages=n)
        result.lower_is_better = True
        out.append(result)
    return out


async def request_reply(ctx: Context) -> list[Result]:
    out = []
    items = payloads(64, ctx.plan.size)
    for k in ctx.plan.rr_in_flight:
        n = ctx.plan.rr_n[ctx.adapter][k]
        got = await ctx.each(lambda s, n=n, k=k: s.round_trips(n, k, items), f"request_reply {k}")
        out.append(ctx.result("request_reply", f"{k} in flight", k, "round trips/s", got,
                              round_trips=n))  # fmt: skip
    return out


FAILING_NOTE = (
    "design comparison, not bus/raw efficiency: the bus parks each failure for its retry "
    "(a delay queue / retry topic / timer) and frees the slot; the raw side retries in "
    "place, holding its slot through the backoff"
)


async def failing(ctx: Context) -> list[Result]:
    """Healthy messages' throughput with and without 1 in ``fail_every`` failing always
    (3 attempts, backoff 50 ms, then given up): the 1 ms handler at concurrency 16."""
    n = ctx.plan.failing_n[ctx.adapter]
    every = ctx.plan.fail_every
    out = []
    for case, fail in (("no failures", 0), (f"1 in {every} failing", every)):

        async def one(side: Any, fail: int = fail) -> float:
            job = ConsumeJob({_topic("fail"): payloads(n, ctx.plan.size, fail)}, 16, io_1ms,
                             retry=True)  # fmt: skip
            return float(await side.consume(job))

        got = await ctx.each(one, f"failing {case}")
        result = ctx.result("failing", case, fail, "healthy msg/s", got, messages=n)
        result.note = FAILING_NOTE
        out.append(result)
    return out


async def telemetry_rows(ctx: Context) -> list[Result]:
    """The bus publishing and handling the same messages with the OpenTelemetry SDK
    installed (parent-based 10% sampler, in-memory exporters) against no SDK; each run in
    a process of its own (a tracer provider, once set, cannot be taken back)."""
    n = ctx.plan.telemetry_n[ctx.adapter]
    callers = ctx.plan.callers
    sides = {
        "raw": telemetry.Child("bus, no SDK", None),
        "bus": telemetry.Child("bus, SDK 10%", 0.1),
    }
    inner = Context(ctx.adapter, ctx.plan, sides, ctx.tick, ctx.notes)

    async def one(side: telemetry.Child) -> float:
        return await side.run(ctx.bus.url, n, callers, ctx.plan.size)

    got = await inner.each(one, "telemetry")
    result = inner.result("telemetry", "publish + handle, SDK 10% / no SDK", 0.1, "msg/s", got,
                          messages=n, callers=callers)  # fmt: skip
    result.note = "both sides are the bus: with the SDK over without it"
    # What the SDK alone costs per sampled message bounds the ratio, whatever the bus
    # does: a run at R msg/s without the SDK reaches at best 1 / (1 + 0.1 * floor * R).
    floors = sides["bus"].sdk_us
    plain = [r for r in result.rounds.get("raw", []) if r]
    if floors and plain:
        floor = statistics.median(floors)
        best = [1 / (1 + 0.1 * floor / 1e6 * rate) for rate in plain]
        result.extra["sdk_us_per_sampled_message"] = round(floor, 1)
        cap = statistics.median(best)
        result.extra["best_possible_ratio"] = round(cap, 2)
        result.note += (
            f"; {ctx.adapter}: the SDK alone spends {floor:.0f} us on a sampled message (two "
            f"recorded spans, one histogram record), which caps the ratio at about {cap:.2f} "
            "at this rate, before any cost of the 90% left unsampled"
        )
    return [result]


OUTBOX_DESIGN = (
    "outbox rows against plain publish are a design comparison, not bus/raw efficiency: a "
    "transaction per message and the relay's round trip against one confirmed publish"
)
OUTBOX_INBOX = (
    "inbox rows: both sides are the bus, idempotent (an inbox row and a transaction per "
    "message) over plain; writing a row, the difference is the inbox row alone"
)


def _versus(ctx: Context, got: Values, base: str, mine: str, field: str | None, case: str,
            param: float | str, unit: str, **extra: Any) -> Result:  # fmt: skip
    """A row of an ``outbox`` point whose sides are more than two: ``mine`` (in the bus
    column) over ``base`` (in the raw column), on ``field`` of each round's values."""
    pair = {"raw": ctx.sides[base], "bus": ctx.sides[mine]}
    rounds = {
        role: [v if v is None or field is None else v[field] for v in got[name]]
        for role, name in (("raw", base), ("bus", mine))
    }
    return replace(ctx, sides=pair).result("outbox", case, param, unit, rounds, **extra)


async def _outbox_full(ctx: Context, st: Any) -> list[Result]:
    """``outbox_producers`` keyed tasks committing ``outbox_n`` messages, a transaction
    each, relayed: the bus against the asyncpg outbox, with and without NOTIFY, and
    against a plain publish."""
    items = payloads(ctx.plan.outbox_n, ctx.plan.size)
    producers = ctx.plan.outbox_producers

    async def one(side: Any) -> dict[str, float]:
        topic = _topic("outbox")
        async with st.sink(topic):
            return dict(await side.send(topic, items, producers))

    got = await ctx.each(one, "outbox")
    out = []
    for base in ("raw", "raw_notify", "publish"):
        # Latency at full speed is mostly queueing (the producers outrun any relay): kept
        # in the JSON, the paced rows measure it.
        queued = {
            f"{q}_ms_rounds": {"raw": [v[q] for v in got[base]], "bus": [v[q] for v in got["bus"]]}
            for q in ("p50", "p99")
        }
        out.append(_versus(ctx, got, base, "bus", "rate", f"outbox, {producers} producers",
                           producers, "msg/s", messages=len(items), **queued))  # fmt: skip
    out[-1].note = OUTBOX_DESIGN
    return out


async def _outbox_paced(ctx: Context, st: Any) -> list[Result]:
    """One task paced at ``outbox_paced_rate``/s: a message's latency, the end of its
    transaction block (or its publish call) to the broker's confirm, nothing queued ahead."""
    items = payloads(ctx.plan.outbox_paced_n, ctx.plan.size)
    rate = ctx.plan.outbox_paced_rate

    async def one(side: Any) -> dict[str, float]:
        topic = _topic("outbox")
        async with st.sink(topic):
            return dict(await side.send(topic, items, 1, 1 / rate))

    got = await ctx.each(one, "outbox paced")
    out = []
    for base in ("raw", "publish"):
        for q in ("p50", "p99"):
            row = _versus(ctx, got, base, "bus", q, f"outbox at {rate:.0f}/s, {q}", q, "ms",
                          rate=rate, messages=len(items))  # fmt: skip
            row.lower_is_better = True
            row.note = OUTBOX_DESIGN if base == "publish" else ""
            out.append(row)
    return out


async def _inbox(ctx: Context, st: Any) -> list[Result]:
    """``outbox_n`` queued messages handled at ``outbox_concurrency``: idempotent over
    plain, with an empty handler and with one writing a row."""
    items = payloads(ctx.plan.outbox_n, ctx.plan.size)
    c = ctx.plan.outbox_concurrency

    async def one(side: Any) -> float:
        topic = _topic("inbox")
        async with st.group(topic) as group:
            return float(await side.consume(topic, group, items, c))

    got = await ctx.each(one, "inbox")
    out = []
    rows = (("raw", "bus", "idempotent, empty handler"), ("raw_write", "bus_write",
                                                          "idempotent, writing a row"))  # fmt: skip
    for base, mine, case in rows:
        row = _versus(ctx, got, base, mine, None, f"{case}, concurrency {c}", c, "msg/s",
                      messages=len(items))  # fmt: skip
        costs = [(1 / b - 1 / a) * 1e6 for a, b in zip(got[base], got[mine], strict=True)]
        row.extra["inbox_us_per_message"] = round(statistics.median(costs), 1)
        row.note = OUTBOX_INBOX
        out.append(row)
    return out


async def outbox(ctx: Context) -> list[Result]:
    """The outbox and the inbox, on RabbitMQ with PostgreSQL (a database and an exchange
    of the scenario's own: sides_outbox.py). The raw side is an outbox written by hand
    with asyncpg and aio-pika; plain publish and the inbox rows compare the bus with
    itself. Not in the default set: it needs PostgreSQL."""
    if ctx.adapter != "rabbitmq":
        ctx.note(f"outbox: RabbitMQ only (its raw side relays with aio-pika); not on {ctx.adapter}")
        return []
    from benchmarks.suite.sides_bus import BusInbox, BusPublisher
    from benchmarks.suite.sides_outbox import RawOutbox, stage

    async with stage(ctx.sides["raw"].url, ctx.sides["raw"].exchange) as st:
        url, dsn = st.bus_url, st.dsn
        publishers = {
            "raw": RawOutbox(st, notify=False),
            "raw_notify": RawOutbox(st, notify=True),
            "publish": BusPublisher(url, dsn, outbox=False),
            "bus": BusPublisher(url, dsn, outbox=True),
        }
        out = await _outbox_full(replace(ctx, sides=publishers), st)
        paced = {role: publishers[role] for role in ("raw", "publish", "bus")}
        out += await _outbox_paced(replace(ctx, sides=paced), st)
        consumers = {
            "raw": BusInbox(url, dsn, idempotent=False, write=False),
            "bus": BusInbox(url, dsn, idempotent=True, write=False),
            "raw_write": BusInbox(url, dsn, idempotent=False, write=True),
            "bus_write": BusInbox(url, dsn, idempotent=True, write=True),
        }
        out += await _inbox(replace(ctx, sides=consumers), st)
    return out


SCENARIOS: dict[str, Callable[[Context], Awaitable[list[Result]]]] = {
    "publish_one": publish_one,
    "publish_batch": publish_batch,
    "consume": consume,
    "concurrency": concurrency,
    "request_reply": request_reply,
    "latency": latency,
    "failing": failing,
    "telemetry": telemetry_rows,
    "sizes": sizes,
    "topics": topics,
    "partitions": partitions,
    "processes": processes,
    "outbox": outbox,
}
DEFAULT = (
    "publish_one", "publish_batch", "consume", "concurrency", "request_reply", "latency",
    "failing", "telemetry",
)  # fmt: skip


def steps(plan: Plan, adapter: str, scenario: str, sides: int) -> int:
    """How many side-rounds ``scenario`` runs on ``adapter`` (for the progress bar)."""
    points = {
        "publish_one": 1,
        "publish_batch": 1,
        "consume": 1,
        "concurrency": len(plan.concurrencies[adapter]),
        "request_reply": len(plan.rr_in_flight),
        "latency": 1,
        "failing": 2,
        "sizes": 2 * len(plan.sizes),
        "topics": len(plan.topics[adapter]),
        "partitions": len(plan.partitions) if adapter == "kafka" else 0,
    }
    if scenario == "telemetry":
        return 2 * plan.rounds
    if scenario == "outbox":  # its own sides: 4 publishing, 3 paced, 4 consuming
        return 0 if adapter != "rabbitmq" else 11 * plan.rounds
    if scenario == "processes":
        return 0 if adapter == "memory" else len(plan.processes) * plan.rounds
    return points[scenario] * plan.rounds * sides


__all__ = ["DEFAULT", "SCENARIOS", "Context", "steps"]

"""What is measured. Each scenario takes a Context (one adapter's sides and the plan)
and returns Results; sides alternate which goes first from one point to the next, so a
noisy neighbour on the machine hits both alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.suite import procs
from benchmarks.suite.drive import ConsumeJob, uid
from benchmarks.suite.model import Payload, Result, io_1ms, noop, payloads
from benchmarks.suite.plan import Plan
from benchmarks.suite.track import percentiles

Tick = Callable[[str], None]


@dataclass
class Context:
    adapter: str
    plan: Plan
    bus: Any
    raw: Any
    peer: Any | None
    tick: Tick  # progress: one call per measured point
    notes: list[str]
    flip: bool = False
    last_rounds: dict[str, list[Any]] | None = None  # every round of the last point
    declined_fn: Any = None  # the case the peer declined last

    def sides(self) -> list[tuple[str, Any]]:
        out = [("raw", self.raw), ("bus", self.bus)]
        if self.peer is not None:
            out.append(("peer", self.peer))
        self.flip = not self.flip
        return out if self.flip else out[::-1]

    async def each(self, fn: Callable[[Any], Awaitable[Any]], rounds: int | None = None,
                   best: Callable[[list[Any]], Any] = max) -> dict[str, Any]:  # fmt: skip
        """Run ``fn`` on every side, ``rounds`` times (alternating which side goes first);
        keep each side's best round. A peer may decline a case (NotImplementedError)."""
        runs: dict[str, list[Any]] = {}
        for _ in range(rounds or self.plan.rounds):
            for role, side in self.sides():
                if role == "peer" and fn is self.declined_fn:
                    continue
                try:
                    runs.setdefault(role, []).append(await fn(side))
                except NotImplementedError as exc:  # a peer that does not support this case
                    runs.pop(role, None)
                    self.declined_fn = fn
                    note = f"{self.adapter}: {side.name} left out of a case: {exc}"
                    if note not in self.notes:
                        self.notes.append(note)
                except TimeoutError:
                    if role != "peer":
                        raise
                    # A peer too slow for the case's deadline costs its own figure, not the
                    # bus's and the raw client's.
                    runs.pop(role, None)
                    self.declined_fn = fn
                    self.notes.append(
                        f"{self.adapter}: {side.name} did not finish a case in time; left out"
                    )
        self.last_rounds = runs
        return {role: best(values) for role, values in runs.items()}

    def result(self, scenario: str, case: str, param: float | str, unit: str, got: dict[str, Any],
               **extra: Any) -> Result:  # fmt: skip
        self.tick(f"{self.adapter} {scenario} {case}")
        if self.last_rounds and max(len(v) for v in self.last_rounds.values()) > 1:
            extra["rounds"] = self.last_rounds
        self.last_rounds = None
        return Result(
            scenario, self.adapter, case, param, unit, got.get("bus"), got.get("raw"),
            self.raw.name, got.get("peer"), self.peer.name if self.peer else None, extra=extra,
        )  # fmt: skip


def _topic(kind: str) -> str:
    return f"{kind}.{uid()}"


async def publish(ctx: Context) -> list[Result]:
    out = []
    window = ctx.plan.window_for(ctx.adapter)
    for size in ctx.plan.sizes:
        items = payloads(ctx.plan.publish_n[ctx.adapter], size)
        got = await ctx.each(lambda s, i=items: s.publish(_topic("pub"), i, window))
        out.append(ctx.result("publish", f"{size} B", size, "msg/s", got, window=window))
    return out


async def consume(ctx: Context) -> list[Result]:
    out = []
    c = ctx.plan.consume_concurrency
    for size in ctx.plan.sizes:
        n = ctx.plan.consume_n[ctx.adapter]

        async def one(side: Any, size: int = size, n: int = n) -> float:
            job = ConsumeJob({_topic("con"): payloads(n, size)}, c, noop)
            return float(await side.consume(job))

        out.append(ctx.result("consume", f"{size} B", size, "msg/s", await ctx.each(one),
                              concurrency=c))  # fmt: skip
    return out


async def concurrency(ctx: Context) -> list[Result]:
    out = []
    plan = ctx.plan
    for c in plan.concurrencies:
        n = max(plan.concurrency_min, c * plan.concurrency_per_level)
        n = min(plan.concurrency_cap[ctx.adapter], n)

        async def one(side: Any, c: int = c, n: int = n) -> float:
            job = ConsumeJob({_topic("conc"): payloads(n, 256)}, c, io_1ms)
            return float(await side.consume(job))

        out.append(ctx.result("concurrency", f"concurrency {c}", c, "msg/s", await ctx.each(one),
                              messages=n))  # fmt: skip
    return out


async def processes(ctx: Context) -> list[Result]:
    if ctx.adapter == "memory":
        ctx.notes.append("processes: not on memory (an embedded broker lives in one process)")
        return []
    out = []
    for count in ctx.plan.processes:
        items = payloads(ctx.plan.processes_n[ctx.adapter], 256)
        rate, whole, shares = await procs.run(
            ctx.bus.url, ctx.bus.declares, items, count, 16, 120.0
        )
        out.append(ctx.result("processes", f"{count} process(es)", count, "msg/s", {"bus": rate},
                              whole_run=whole, shares=shares, concurrency=16))  # fmt: skip
    return out


async def partitions(ctx: Context) -> list[Result]:
    if ctx.adapter != "kafka":
        return []
    out = []
    for p in ctx.plan.partitions:

        async def one(side: Any, p: int = p) -> float:
            job = ConsumeJob({_topic("part"): payloads(ctx.plan.partitions_n, 256)}, 64, io_1ms,
                             partitions=p)  # fmt: skip
            return float(await side.consume(job))

        out.append(ctx.result("partitions", f"{p} partition(s)", p, "msg/s", await ctx.each(one),
                              concurrency=64))  # fmt: skip
    return out


async def topics(ctx: Context) -> list[Result]:
    out = []
    total = ctx.plan.topics_n[ctx.adapter]
    for t in ctx.plan.topics[ctx.adapter]:
        per = max(1, 64 // t)

        async def one(side: Any, t: int = t, per: int = per) -> float:
            if side is ctx.peer and t > 100:
                raise NotImplementedError("over 100 topics, to keep the run short")
            prefix = _topic("top")
            loads = {f"{prefix}.{i}": payloads(total // t, 256) for i in range(t)}
            return float(await side.consume(ConsumeJob(loads, per, noop, timeout=300.0)))

        out.append(ctx.result("topics", f"{t} topic(s)", t, "msg/s", await ctx.each(one, 1),
                              concurrency_per_topic=per, messages=total // t * t))  # fmt: skip
    return out


async def latency(ctx: Context) -> list[Result]:
    rate = ctx.plan.latency_rate[ctx.adapter]
    n = ctx.plan.latency_n[ctx.adapter]

    async def one(side: Any) -> dict[str, float]:
        return percentiles(await side.latency(payloads(n, 1024), rate))

    got = await ctx.each(one, best=lambda runs: min(runs, key=lambda q: q["p99"]))
    out = []
    for name in ("p50", "p99", "p99.9"):
        picked = {role: q[name] for role, q in got.items()}
        out.append(ctx.result("latency", name, name, "ms", picked, rate=rate, messages=n))
    return out


async def request_reply(ctx: Context) -> list[Result]:
    out = []
    items = payloads(64, 256)
    for k in ctx.plan.rr_in_flight:
        n = ctx.plan.rr_n[ctx.adapter][k]
        got = await ctx.each(lambda s, n=n, k=k: s.round_trips(n, k, items))
        out.append(ctx.result("request_reply", f"{k} in flight", k, "round trips/s", got))
    return out


async def failing(ctx: Context) -> list[Result]:
    """Healthy messages' throughput with and without 1 in ``fail_every`` failing always
    (3 attempts, backoff 50 ms, then given up): the 1 ms handler at concurrency 16."""
    n = ctx.plan.failing_n[ctx.adapter]
    every = ctx.plan.fail_every
    out = []
    for case, fail in (("no failures", 0), (f"1 in {every} failing", every)):

        async def one(side: Any, fail: int = fail) -> float:
            job = ConsumeJob({_topic("fail"): payloads(n, 256, fail)}, 16, io_1ms, retry=True)
            return float(await side.consume(job))

        out.append(ctx.result("failing", case, fail, "healthy msg/s", await ctx.each(one),
                              messages=n))  # fmt: skip
    return out


SCENARIOS: dict[str, Callable[[Context], Awaitable[list[Result]]]] = {
    "publish": publish,
    "consume": consume,
    "concurrency": concurrency,
    "processes": processes,
    "partitions": partitions,
    "topics": topics,
    "latency": latency,
    "request_reply": request_reply,
    "failing": failing,
}


def points(plan: Plan, adapter: str, only: str | None) -> int:
    """How many results a run of ``adapter`` yields (for the progress bar)."""
    counts = {
        "publish": len(plan.sizes),
        "consume": len(plan.sizes),
        "concurrency": len(plan.concurrencies),
        "processes": 0 if adapter == "memory" else len(plan.processes),
        "partitions": len(plan.partitions) if adapter == "kafka" else 0,
        "topics": len(plan.topics[adapter]),
        "latency": 3,
        "request_reply": len(plan.rr_in_flight),
        "failing": 2,
    }
    return sum(v for k, v in counts.items() if only is None or k == only)


__all__ = ["SCENARIOS", "Context", "Payload", "points"]

"""PNG plots of a run (matplotlib, headless): throughput against concurrency,
partitions and topics; latency percentiles; publish and consume by message size."""

from __future__ import annotations

from pathlib import Path

from benchmarks.suite.model import Result

COLORS = {"memory": "tab:green", "rabbitmq": "tab:orange", "kafka": "tab:blue"}


def require() -> None:
    """Fail with a clear message when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the plots need matplotlib: .venv/bin/pip install 'matplotlib>=3.8' "
            "(or pass --no-plots)"
        ) from None


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _lines(ax, rows: list[Result], ideal: bool = False) -> None:  # type: ignore[no-untyped-def]
    for adapter in COLORS:
        mine = sorted((r for r in rows if r.adapter == adapter), key=lambda r: float(r.param))
        if not mine:
            continue
        xs = [float(r.param) for r in mine]
        color = COLORS[adapter]
        ax.plot(xs, [r.bus for r in mine], "o-", color=color, label=f"{adapter}: bus")
        if any(r.raw is not None for r in mine):
            ax.plot(xs, [r.raw for r in mine], "s--", color=color, alpha=0.6,
                    label=f"{adapter}: {mine[0].raw_name}")  # fmt: skip
        if any(r.peer is not None for r in mine):
            ax.plot(xs, [r.peer for r in mine], "^:", color=color, alpha=0.6,
                    label=f"{adapter}: {mine[0].peer_name}")  # fmt: skip
        if ideal and mine[0].bus:
            base = mine[0].bus / xs[0]
            ax.plot(xs, [0.8 * base * x for x in xs], ":", color=color, alpha=0.4,
                    label=f"{adapter}: 0.8 x linear")  # fmt: skip


def _figure(rows: list[Result], path: Path, title: str, xlabel: str, ylabel: str,
            logx: bool = True, ideal: bool = False) -> Path | None:  # fmt: skip
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    _lines(ax, rows, ideal)
    if logx:
        ax.set_xscale("log", base=2 if ideal else 10)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(rows: list[Result], path: Path) -> Path | None:
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    labels, values, colors = [], [], []
    for adapter in COLORS:
        for side in ("bus", "raw", "peer"):
            mine = [r for r in rows if r.adapter == adapter and getattr(r, side) is not None]
            if not mine:
                continue
            name = {"bus": "bus", "raw": mine[0].raw_name, "peer": mine[0].peer_name}[side]
            labels.append(f"{adapter}\n{name}")
            values.append([getattr(r, side) for r in mine])
            colors.append(COLORS[adapter])
    width = 0.27
    for k, pct in enumerate(("p50", "p99", "p99.9")):
        xs = [i + (k - 1) * width for i in range(len(labels))]
        ax.bar(xs, [v[k] if k < len(v) else 0 for v in values], width, label=pct,
               alpha=[0.9, 0.6, 0.35][k], color=colors)  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency, ms (bars: p50, p99, p99.9)")
    rates = sorted({f"{r.adapter} {r.extra.get('rate', 0):.0f}/s" for r in rows})
    ax.set_title("Latency at a fixed offered rate: " + ", ".join(rates), fontsize=9)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: list[Result], directory: Path, stamp: str) -> list[Path]:
    """Every plot this run has data for; returns the files written."""

    def pick(name: str) -> list[Result]:
        return [r for r in results if r.scenario == name and r.bus is not None]

    made = [
        _figure(pick("concurrency"), directory / f"{stamp}-concurrency.png",
                "Consume throughput vs handler concurrency (1 ms handler)",
                "handler concurrency", "messages/s", ideal=True),
        _figure(pick("partitions"), directory / f"{stamp}-partitions.png",
                "Kafka: consume throughput vs partitions (1 ms handler, concurrency 64)",
                "partitions", "messages/s"),
        _figure(pick("topics"), directory / f"{stamp}-topics.png",
                "Consume throughput vs number of topics/groups (same total load)",
                "topics (one group each)", "messages/s"),
        _figure(pick("publish"), directory / f"{stamp}-publish.png",
                "Publish throughput vs message size (confirms / acks=all)",
                "message size, bytes", "messages/s"),
        _figure(pick("consume"), directory / f"{stamp}-consume.png",
                "Consume throughput vs message size (no-op handler)",
                "message size, bytes", "messages/s"),
        _latency(pick("latency"), directory / f"{stamp}-latency.png"),
    ]  # fmt: skip
    return [p for p in made if p is not None]

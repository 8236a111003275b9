"""PNG plots of a run (matplotlib, headless): medians of the rounds against handler
concurrency, partitions, topics and message size."""

from __future__ import annotations

from pathlib import Path

from benchmarks.suite.model import Result

COLORS = {"memory": "tab:green", "rabbitmq": "tab:orange", "kafka": "tab:blue"}
STYLES = {"bus": "o-", "raw": "s--"}


def require() -> None:
    """Fail with a clear message when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the plots need matplotlib: .venv/bin/pip install 'matplotlib>=3.8' "
            "(or pass --no-plots)"
        ) from None


def _figure(rows: list[Result], path: Path, title: str, xlabel: str) -> Path | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for adapter, color in COLORS.items():
        mine = sorted((r for r in rows if r.adapter == adapter), key=lambda r: float(r.param))
        if not mine:
            continue
        xs = [float(r.param) for r in mine]
        for role in sorted({role for r in mine for role in r.rounds}):
            ys = [r.value(role) for r in mine]
            name = next(r.names[role] for r in mine if role in r.names)
            alpha = 1.0 if role == "bus" else 0.6
            style = STYLES.get(role, "^:")
            ax.plot(xs, ys, style, color=color, alpha=alpha, label=f"{adapter}: {name}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title + " (median of the rounds)", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(rows[0].unit)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: list[Result], directory: Path, stamp: str) -> list[Path]:
    """Every plot this run has data for; returns the files written."""

    def pick(name: str, prefix: str = "") -> list[Result]:
        return [r for r in results if r.scenario == name and r.case.startswith(prefix)]

    made = [
        _figure(pick("concurrency"), directory / f"{stamp}-concurrency.png",
                "Consume throughput vs handler concurrency (1 ms handler)", "handler concurrency"),
        _figure(pick("partitions"), directory / f"{stamp}-partitions.png",
                "Kafka: consume vs partitions (1 ms handler, concurrency 64)", "partitions"),
        _figure(pick("topics"), directory / f"{stamp}-topics.png",
                "Consume vs number of topics/groups (same total load)", "topics"),
        _figure(pick("sizes", "publish"), directory / f"{stamp}-publish-sizes.png",
                "Publish vs message size", "bytes"),
        _figure(pick("sizes", "consume"), directory / f"{stamp}-consume-sizes.png",
                "Consume vs message size", "bytes"),
    ]  # fmt: skip
    return [p for p in made if p is not None]

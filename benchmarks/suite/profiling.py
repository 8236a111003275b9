"""``--profile``: pyinstrument around the bus side's measured windows only (set-up,
preload and teardown left out), every round into one profile per scenario.

pyinstrument is not a dependency: ``.venv/bin/pip install pyinstrument`` to use it."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_profiler: Any = None
_enabled = False


def enable() -> None:
    """Profile from now on; SystemExit with the fix when pyinstrument is missing."""
    global _enabled
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--profile needs pyinstrument: .venv/bin/pip install pyinstrument"
        ) from None
    _enabled = True


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def window(active: bool) -> Iterator[None]:
    """Profile the body when profiling is on and ``active`` (the bus side's window)."""
    global _profiler
    if not (_enabled and active):
        yield
        return
    from pyinstrument import Profiler

    if _profiler is None:
        _profiler = Profiler(interval=0.0005, async_mode="disabled")
    _profiler.start()
    try:
        yield
    finally:
        _profiler.stop()


def flush(directory: Path, stem: str) -> Path | None:
    """Write what was profiled since the last flush: ``<stem>.txt`` (the call tree with
    library frames folded, then the functions with the most time of their own and with
    the most time in all, as shares of the profiled wall time), ``<stem>.html`` and
    ``<stem>.pyisession`` (``pyinstrument --load FILE`` shows it again); return the text."""
    global _profiler
    if _profiler is None:
        return None
    profiler, _profiler = _profiler, None
    session = profiler.last_session
    directory.mkdir(parents=True, exist_ok=True)
    tree = profiler.output_text(unicode=False, color=False, show_all=False)
    own, total = _shares(session.root_frame())
    lines = [tree, "", f"Time of their own (of {session.duration:.2f} s wall, "
             f"{session.cpu_time:.2f} s CPU):"]  # fmt: skip
    lines += [f"{100 * v:5.1f}%  {k}" for k, v in own.most_common(40)]
    lines += ["", "Time in all (the function and what it called):"]
    lines += [f"{100 * v:5.1f}%  {k}" for k, v in total.most_common(60)]
    text = directory / f"{stem}.txt"
    text.write_text("\n".join(lines) + "\n")
    (directory / f"{stem}.html").write_text(profiler.output_html())
    session.save(str(directory / f"{stem}.pyisession"))
    return text


def _shares(root: Any) -> tuple[Counter[str], Counter[str]]:
    """Each function's own time and its time in all (recursion counted once), as shares
    of the root's; pyinstrument's ``[self]`` frames go to the function they stand for."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    whole = root.time or 1.0

    def walk(frame: Any, parent: str, stack: frozenset[str]) -> None:
        if frame.identifier.startswith("[self]") or frame.function in (None, "[self]"):
            own[parent] += frame.time / whole
            return
        key = f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        own[key] += (frame.time - sum(c.time for c in frame.children)) / whole
        if key not in stack:
            total[key] += frame.time / whole
        for child in frame.children:
            walk(child, key, stack | {key})

    walk(root, "root", frozenset())
    return own, total

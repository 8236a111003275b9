"""The progress bar on stderr (rich): one step per side per round."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar


class Progress:
    def __init__(self, total: int) -> None:
        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("starting", total=max(1, total))
        self._bar.start()

    def step(self, label: str) -> None:
        self._bar.update(self._task, advance=1, description=label)

    def show(self, label: str) -> None:
        self._bar.update(self._task, description=label)

    def close(self) -> None:
        self._bar.stop()

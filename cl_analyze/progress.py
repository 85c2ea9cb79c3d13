"""Progress display: a rich bar for people, plain log lines with ``--quiet`` or off a terminal."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """Shows one task at a time (an epoch, an embedding pass) with its step count and ETA."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Reporter:
        return self

    def _open(self) -> Progress:
        # Opened on the first task only: an empty live display still prints a blank line.
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        return self._progress

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, traceback)
            self._progress = None
            self._task = None

    @property
    def shows_progress(self) -> bool:
        """False with --quiet: callers then skip gathering numbers only a bar would show."""
        return not self.quiet

    def start(self, description: str, total: int) -> None:
        if self.quiet:
            return
        progress = self._open()
        if self._task is not None:
            progress.remove_task(self._task)
        self._task = progress.add_task(description, total=total, stats="")

    def advance(self, steps: int = 1, stats: Mapping[str, float] | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        if stats is None:
            self._progress.advance(self._task, steps)
        else:
            self._progress.update(self._task, advance=steps, stats=format_stats(stats))

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)


def format_stats(stats: Mapping[str, float]) -> str:
    parts = []
    for name, value in stats.items():
        if "acc" in name:
            parts.append(f"{name} {100 * value:.2f}%")
        else:
            parts.append(f"{name} {value:.4g}")
    return "  ".join(parts)

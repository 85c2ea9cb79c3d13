"""The sweep's live table, or one log line per event with --quiet."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from cl_analyze.sweep.state import STATES, SweepRun


@dataclass
class Progress:
    epoch: int | None = None
    test_accuracy: float | None = None


class SweepLog:
    """The live table, or with ``--quiet`` one log line per event."""

    def __init__(self, console: Console, quiet: bool, epochs: Mapping[str, int]) -> None:
        self.console = console
        self.quiet = quiet
        self.epochs = epochs

    @contextlib.contextmanager
    def live(self, render: Callable[[], Table]) -> Iterator[Callable[[], None]]:
        if self.quiet:
            yield lambda: None
            return
        with Live(render(), console=self.console, auto_refresh=False) as live:
            yield lambda: live.update(render(), refresh=True)

    def line(self, message: str) -> None:
        if self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(self, name: str, before: Progress | None, now: Progress) -> None:
        if now.epoch is not None and (before is None or before.epoch != now.epoch):
            self.line(
                f"{name}: epoch {now.epoch}/{self.epochs[name]}  test {_percent(now.test_accuracy)}"
            )

    def finished(self, run: SweepRun) -> None:
        self.line(f"{run.name}: {run.state}" + (f" ({run.error})" if run.error else ""))


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


STATE_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "done": "green",
    "failed": "red",
    "interrupted": "yellow",
}


def progress_table(
    runs: Sequence[SweepRun], progress: Mapping[str, Progress], epochs: Mapping[str, int]
) -> Table:
    counts = {state: sum(run.state == state for run in runs) for state in STATES}
    caption = "  ".join(f"{n} {state}" for state, n in counts.items() if n)
    table = Table(title="sweep", caption=caption, title_justify="left")
    for column in ("run", "state", "epoch", "test acc", "device", "note"):
        table.add_column(column, justify="right" if column in ("epoch", "test acc") else "left")
    for run in runs:
        seen = progress.get(run.name)
        epoch = "-" if seen is None or seen.epoch is None else f"{seen.epoch}/{epochs[run.name]}"
        note = run.error or ("skipped" if run.action == "skipped" else run.action or "")
        table.add_row(
            run.name,
            f"[{STATE_STYLES[run.state]}]{run.state}[/]",
            epoch,
            _percent(None if seen is None else seen.test_accuracy),
            run.device or "-",
            note,
        )
    return table

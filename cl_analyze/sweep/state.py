"""A sweep folder's sweep.json: the grid, the fixed options and each run's state."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError

SWEEP_FORMAT = "cl-analyze-sweep"


SWEEP_VERSION = 1


SWEEP_JSON = "sweep.json"


LOGS_DIR = "logs"


STATES = ("pending", "running", "done", "failed", "interrupted")


@dataclass(frozen=True)
class SweepRun:
    """One combination: its folder, swept values, state and what the last call did with it."""

    name: str
    folder: Path
    values: Mapping[str, Any]
    state: str = "pending"
    action: str | None = None
    error: str | None = None
    device: str | None = None
    log: Path | None = None


@dataclass(frozen=True)
class SweepInfo:
    """A sweep folder as recorded in its ``sweep.json``."""

    path: Path
    grid: Mapping[str, tuple[Any, ...]]
    fixed: Mapping[str, Any]
    backend: str
    runs: tuple[SweepRun, ...]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The swept TrainConfig fields, in grid order."""
        return tuple(self.grid)

    def config(self, run: SweepRun) -> TrainConfig:
        """The TrainConfig a run was asked to train with (its device is chosen per call)."""
        return TrainConfig(**{**self.fixed, **run.values})

    def run(self, name: str) -> SweepRun:
        for run in self.runs:
            if run.name == name:
                return run
        raise CLAnalyzeError(f"no run {name!r} in the sweep {self.path}: pick one from sweep.json")


@dataclass(frozen=True)
class SweepResult:
    """What ``run_sweep`` did: the sweep folder, every run's final state, whether Ctrl-C cut it."""

    sweep_dir: Path
    runs: tuple[SweepRun, ...]
    interrupted: bool = False

    def count(self, state: str) -> int:
        return sum(run.state == state for run in self.runs)

    @property
    def failed(self) -> tuple[SweepRun, ...]:
        return tuple(run for run in self.runs if run.state == "failed")


def load_sweep(path: Path | str) -> SweepInfo:
    """Read a sweep folder's ``sweep.json`` (or the file itself)."""
    path = Path(path)
    sweep_dir = path.parent if path.name == SWEEP_JSON else path
    document = _read_sweep_json(sweep_dir)
    runs = tuple(
        SweepRun(
            name=entry["name"],
            folder=sweep_dir / entry["folder"],
            values=dict(entry["values"]),
            state=entry["state"],
            action=entry.get("action"),
            error=entry.get("error"),
            device=entry.get("device"),
            log=sweep_dir / entry["log"] if entry.get("log") else None,
        )
        for entry in document["runs"]
    )
    return SweepInfo(
        path=sweep_dir,
        grid={k: tuple(v) for k, v in document["grid"].items()},
        fixed=dict(document["fixed"]),
        backend=document.get("backend", "local"),
        runs=runs,
    )


def _read_sweep_json(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_JSON
    if not path.is_file():
        raise CLAnalyzeError(
            f"no {SWEEP_JSON} in {sweep_dir}: point at a folder written by `cl-analyze sweep`"
        )
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CLAnalyzeError(
            f"cannot read {path} ({error}): is it from cl-analyze sweep?"
        ) from None
    if not isinstance(document, dict) or document.get("format") != SWEEP_FORMAT:
        raise CLAnalyzeError(f"{path} is not a cl-analyze sweep file: pick a sweep folder")
    return document


def write_sweep_json(
    sweep_dir: Path,
    grid: Sequence[tuple[str, tuple[Any, ...]]],
    fixed: Mapping[str, Any],
    backend: str,
    runs: Sequence[SweepRun],
) -> None:
    """Atomic replace, so a reader (or a crash) never sees half a file."""
    document = {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": backend,
        "grid": {name: list(values) for name, values in grid},
        "fixed": dict(fixed),
        "runs": [
            {
                "name": run.name,
                "folder": run.folder.name,
                "values": dict(run.values),
                "state": run.state,
                "action": run.action,
                "error": run.error,
                "device": run.device,
                "log": None if run.log is None else str(run.log.relative_to(sweep_dir)),
            }
            for run in runs
        ],
    }
    temporary = sweep_dir / (SWEEP_JSON + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, sweep_dir / SWEEP_JSON)

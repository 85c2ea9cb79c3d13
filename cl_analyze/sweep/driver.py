"""Running a sweep: claim its folder, decide each run's action, drive the backend, record states."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from cl_analyze.config import RESUME_OVERRIDABLE, TrainConfig
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.sweep.display import Progress, SweepLog, progress_table
from cl_analyze.sweep.grid import (
    DEFAULTS,
    SweepSpec,
    check_grid,
    combination_name,
    combinations,
    convert_value,
    option_flag,
)
from cl_analyze.sweep.local import LocalBackend
from cl_analyze.sweep.state import (
    LOGS_DIR,
    SWEEP_JSON,
    SweepResult,
    SweepRun,
    load_sweep,
    write_sweep_json,
)
from cl_analyze.sweep.task import Backend, RunTask, WorkerResult, raise_keyboard_interrupt

SWEEP_LOCK = "sweep.lock"


# The action of a run the sweep found unreadable: recorded as failed, its files left alone.
REFUSED = "refused"


POLL_SECONDS = 1.0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill PID`` stops a sweep as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sweep(spec: SweepSpec, console: Console | None = None) -> SweepResult:
    """Train every combination not yet complete; returns each run's final state.

    Raises CLAnalyzeError for bad input before any run starts. Ctrl-C (or SIGTERM) stops the
    workers, records the interrupted runs and returns with ``interrupted=True``.
    """
    console = console or Console(stderr=True)
    folder, grid, fixed = _grid_and_fixed(spec)
    check_grid(grid, fixed)
    base = dict(fixed)
    # Validate every combination before anything is created: a bad one is an input error.
    values_list = combinations(grid)
    configs = [TrainConfig(**{**base, **values}) for values in values_list]
    names = [combination_name(values) for values in values_list]
    if len(set(names)) != len(names):
        raise CLAnalyzeError("two combinations share a folder name: make the grid values differ")
    if "data_dir" in base:
        # Workers (Ray's especially) do not share this process's working directory.
        base["data_dir"] = str(Path(base["data_dir"]).resolve())
    # The backend first: an unreachable Ray cluster must not leave an empty sweep folder.
    backend = _make_backend(spec, str(base.get("device", DEFAULTS["device"])))
    try:
        sweep_dir = _claim_folder(spec, folder)
        with _sweep_lock(sweep_dir):
            runs = [
                _initial_run(sweep_dir, name, values, config)
                for name, values, config in zip(names, values_list, configs, strict=True)
            ]
            return _drive(spec, sweep_dir, grid, fixed, runs, configs, base, backend, console)
    finally:
        backend.close()


def _grid_and_fixed(
    spec: SweepSpec,
) -> tuple[Path | None, list[tuple[str, tuple[Any, ...]]], dict[str, Any]]:
    """The sweep folder if named, and the grid and fixed options (the stored ones on a rerun)."""
    grid = list(spec.grid)
    fixed = dict(spec.fixed)
    folder = spec.resume if spec.resume is not None else spec.out
    if spec.resume is not None and not (spec.resume / SWEEP_JSON).is_file():
        raise CLAnalyzeError(
            f"--resume {spec.resume}: no {SWEEP_JSON} there: point it at a sweep folder"
        )
    if folder is not None and (folder / SWEEP_JSON).is_file():
        return folder, *_merge_with_stored(folder, grid, fixed)
    if not grid:
        raise CLAnalyzeError(
            "no grid given: pass --grid OPTION=V1,V2 (repeatable) or --grid-file sweep.toml"
        )
    if folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CLAnalyzeError(
            f"--out {folder} exists and is not a sweep folder: pick a new or empty folder"
        )
    return folder, grid, fixed


def _claim_folder(spec: SweepSpec, folder: Path | None) -> Path:
    from cl_analyze.training.run_folder import next_run_dir

    if folder is None:
        return next_run_dir(spec.root, prefix="sweep")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _merge_with_stored(
    sweep_dir: Path, grid: list[tuple[str, tuple[Any, ...]]], fixed: dict[str, Any]
) -> tuple[list[tuple[str, tuple[Any, ...]]], dict[str, Any]]:
    """A rerun must describe the same sweep; only options that don't change results may differ."""
    stored = load_sweep(sweep_dir)
    stored_grid = [
        (name, tuple(convert_value(name, v) for v in values))
        for name, values in stored.grid.items()
    ]
    if grid and grid != stored_grid:
        raise CLAnalyzeError(
            f"the grid differs from the sweep in {sweep_dir}: drop --grid to resume it,"
            " or start a new sweep with another --out"
        )
    merged = dict(stored.fixed)
    for name, value in fixed.items():
        before = merged.get(name, DEFAULTS[name])
        if value != before and name not in RESUME_OVERRIDABLE:
            flag = option_flag(name)
            raise CLAnalyzeError(
                f"--{flag} {value} contradicts the sweep in {sweep_dir} ({flag}={before}):"
                f" drop --{flag}, or start a new sweep with another --out"
            )
        merged[name] = value
    return stored_grid, merged


@contextlib.contextmanager
def _sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One coordinator per sweep folder: a second one would train the same runs twice."""
    from cl_analyze.store import run_lock

    with run_lock(sweep_dir, "sweep", lock_name=SWEEP_LOCK):
        yield


def _initial_run(
    sweep_dir: Path, name: str, values: dict[str, Any], config: TrainConfig
) -> SweepRun:
    """Decide what this call does with a run from what its folder holds."""
    from cl_analyze.store import STORE_NAME, writer_alive
    from cl_analyze.training.checkpoints import LAST

    folder = sweep_dir / name
    run = SweepRun(
        name=name, folder=folder, values=values, log=sweep_dir / LOGS_DIR / f"{name}.log"
    )
    rows, store_problem = _stored_rows(folder)
    if rows is not None and rows >= config.epochs + 1:
        return dataclasses.replace(run, state="done", action="skipped")
    if writer_alive(folder):
        raise CLAnalyzeError(
            f"{folder} is being trained by another process: wait for it or stop it"
        )
    if not (folder / STORE_NAME).exists() and not (folder / LAST).exists():
        return dataclasses.replace(run, action="train")
    # Never handed to `fit` unless both files read: a run it cannot read is reported, never
    # restarted (a restart would replace the store and the checkpoints).
    problem = store_problem or _checkpoint_problem(folder / LAST)
    if problem is not None:
        error = f"left untouched: {problem}"
        _append_to_log(run, error)
        return dataclasses.replace(run, state="failed", action=REFUSED, error=error)
    # `fit` resumes from last.pt, or starts again a run killed before its first checkpoint.
    return dataclasses.replace(run, action="resume")


def _stored_rows(folder: Path) -> tuple[int | None, str | None]:
    """(complete rows, None) for a readable store, (None, why) for one that cannot be read,
    (None, None) without a store."""
    from cl_analyze.store import STORE_NAME, RunStore

    if not (folder / STORE_NAME).exists():
        return None, None
    try:
        with RunStore(folder) as store:
            return store.rows, None
    except (CLAnalyzeError, OSError) as error:
        return None, str(error)


def _checkpoint_problem(path: Path) -> str | None:
    from cl_analyze.training.checkpoints import load_checkpoint

    if not path.exists():
        return None
    try:
        load_checkpoint(path)
    except CLAnalyzeError as error:
        return str(error)
    return None


def _append_to_log(run: SweepRun, line: str) -> None:
    """The run's log says why the sweep left it alone (the CLI points at the log)."""
    if run.log is None:
        return
    with contextlib.suppress(OSError):
        run.log.parent.mkdir(parents=True, exist_ok=True)
        with run.log.open("a") as log:
            log.write(f"[sweep] {line}\n")


def _read_progress(folder: Path) -> Progress | None:
    from cl_analyze.store import STORE_NAME, RunStore

    if not (folder / STORE_NAME).is_file():
        return None
    try:
        with RunStore(folder) as store:
            if store.rows == 0:
                return Progress()
            accuracy = float(store.history["test_accuracy"][-1])
            return Progress(int(store.epochs[-1]), accuracy)
    except (CLAnalyzeError, OSError, KeyError, ValueError, IndexError):
        return None  # being created, or mid-flush: try again next poll


def _make_backend(spec: SweepSpec, device: str) -> Backend:
    if spec.backend == "ray":
        from cl_analyze.sweep.ray import RayBackend

        return RayBackend(address=spec.address, jobs=spec.jobs, device=device)
    return LocalBackend(jobs=spec.jobs or 1, device=device)


def _drive(
    spec: SweepSpec,
    sweep_dir: Path,
    grid: Sequence[tuple[str, tuple[Any, ...]]],
    fixed: Mapping[str, Any],
    runs: list[SweepRun],
    configs: list[TrainConfig],
    base: Mapping[str, Any],
    backend: Backend,
    console: Console,
) -> SweepResult:
    index = {run.name: i for i, run in enumerate(runs)}
    epochs = {run.name: config.epochs for run, config in zip(runs, configs, strict=True)}
    progress: dict[str, Progress] = {}
    todo = [run.name for run in runs if run.action in ("train", "resume")]
    for run in runs:
        if run.state == "done":
            seen = _read_progress(run.folder)
            if seen is not None:
                progress[run.name] = seen
    absolute_dir = sweep_dir.resolve()

    def save() -> None:
        write_sweep_json(sweep_dir, grid, fixed, spec.backend, runs)

    def update(name: str, **changes: Any) -> None:
        runs[index[name]] = dataclasses.replace(runs[index[name]], **changes)

    # Reset states left from an earlier call (running/interrupted/failed) to pending.
    for name in todo:
        update(name, state="pending", error=None)
    save()
    # Off a terminal a live table would show only at the end: log lines instead.
    log = SweepLog(console, spec.quiet or not console.is_terminal, epochs)
    for run in runs:
        if run.action == "skipped":
            log.line(f"{run.name}: complete, skipped")
        elif run.action == REFUSED:
            log.finished(run)
    interrupted = False
    with (
        _sigterm_as_interrupt(),
        log.live(lambda: progress_table(runs, progress, epochs)) as refresh,
    ):
        try:
            while todo or any(run.state == "running" for run in runs):
                while todo and sum(r.state == "running" for r in runs) < backend.capacity:
                    name = todo.pop(0)
                    run = runs[index[name]]
                    task = RunTask(
                        name=name,
                        run_dir=str(absolute_dir / name),
                        config={**base, **run.values},
                        action=str(run.action),
                        log_path=str(absolute_dir / LOGS_DIR / f"{name}.log"),
                    )
                    device = backend.start(task)
                    update(name, state="running", device=device)
                    save()
                    log.line(f"{name}: {run.action} on {device}")
                for name, result in backend.wait(POLL_SECONDS):
                    result = _checked(result, runs[index[name]].folder, epochs[name])
                    update(name, state=result.state, error=result.error)
                    save()
                    log.finished(runs[index[name]])
                for run in runs:
                    if run.state == "running":
                        seen = _read_progress(run.folder)
                        if seen is not None:
                            log.progress(run.name, progress.get(run.name), seen)
                            progress[run.name] = seen
                refresh()
        except KeyboardInterrupt:
            interrupted = True
            log.line("interrupted: stopping the runs in flight...")
            backend.stop()
            for run in runs:
                if run.state == "running":
                    update(
                        run.name,
                        state="interrupted",
                        error="interrupted: rerun the sweep to resume it",
                    )
            save()
            refresh()
    return SweepResult(sweep_dir=sweep_dir, runs=tuple(runs), interrupted=interrupted)


def _checked(result: WorkerResult, folder: Path, epochs: int) -> WorkerResult:
    """A worker that says done must have left every row."""
    if result.state != "done":
        return result
    rows, _ = _stored_rows(folder)
    if rows != epochs + 1:
        return WorkerResult(
            "failed", f"worker finished but the store holds {rows} of {epochs + 1} rows"
        )
    return result

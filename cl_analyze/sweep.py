"""Sweeps: one ordinary training run per combination of a grid of train options.

A sweep folder holds ``sweep.json`` (the grid, the fixed options and each run's state), one run
folder per combination (``center-weight=0.01_seed=2/``, readable by every other command) and
``logs/<run>.log`` (each worker's training output). Only the coordinating process writes
``sweep.json``; workers write their own run folders, locally (``--backend local``) or as Ray
tasks (``--backend ray``, see ``sweep_ray.py``). Rerunning a sweep skips complete runs and
resumes interrupted ones from their ``last.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from cl_analyze.config import RESUME_OVERRIDABLE, TrainConfig
from cl_analyze.errors import CLAnalyzeError

SWEEP_FORMAT = "cl-analyze-sweep"
SWEEP_VERSION = 1
SWEEP_JSON = "sweep.json"
SWEEP_LOCK = "sweep.lock"
LOGS_DIR = "logs"
BACKENDS = ("local", "ray")
STATES = ("pending", "running", "done", "failed", "interrupted")
# The sweep picks each run's device; a grid over devices would fight that.
NOT_SWEEPABLE = frozenset({"device"})
POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 15.0

_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def option_flag(name: str) -> str:
    return name.replace("_", "-")


# --- the spec: grid and fixed options ----------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and where. ``grid``: ordered (field, values) pairs; ``fixed``: field values
    shared by every run (TrainConfig field names); the rest says where and how to run."""

    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()
    out: Path | None = None
    resume: Path | None = None
    root: Path = Path("artifacts")
    backend: str = "local"
    jobs: int | None = None
    address: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise CLAnalyzeError(f"unknown backend {self.backend!r}: use local or ray")
        if self.jobs is not None and self.jobs < 1:
            raise CLAnalyzeError(f"--jobs must be >= 1, got {self.jobs}")
        if self.address is not None and self.backend != "ray":
            raise CLAnalyzeError("--address is for the Ray backend: add --backend ray")
        if (
            self.resume is not None
            and self.out is not None
            and self.out.resolve() != self.resume.resolve()
        ):
            raise CLAnalyzeError("--resume already names the sweep folder: drop --out")


def field_name(option: str) -> str:
    """``center-weight`` or ``center_weight`` -> ``center_weight``, or a one-line error."""
    name = option.strip().lstrip("-").replace("-", "_")
    if name not in _FIELD_TYPES:
        known = ", ".join(option_flag(n) for n in _FIELD_TYPES)
        raise CLAnalyzeError(f"unknown train option {option!r}: use one of {known}")
    return name


def convert_value(name: str, value: Any) -> Any:
    """A command-line string or a TOML value, as the TrainConfig field ``name``'s type."""
    hint = _FIELD_TYPES[name]
    allow_none = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        allow_none = len(members) < len(typing.get_args(hint))
        hint = members[0]
    flag = option_flag(name)
    if isinstance(value, str):
        text = value.strip()
        if allow_none and text.lower() in ("none", "null"):
            return None
        try:
            if hint is bool:
                return _parse_bool(text)
            if hint is int:
                return int(text)
            if hint is float:
                return float(text)
        except ValueError:
            raise CLAnalyzeError(
                f"{flag} value {text!r} is not {_KINDS[hint]}: fix the value"
            ) from None
        return text
    if value is None and allow_none:
        return None
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise CLAnalyzeError(f"{flag} value {value!r} is not {_KINDS[hint]}: fix the value")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


def parse_grid_item(item: str) -> tuple[str, tuple[Any, ...]]:
    """``center-weight=0.003,0.01`` -> (``center_weight``, (0.003, 0.01))."""
    option, equals, values_text = item.partition("=")
    if not equals or not option.strip():
        raise CLAnalyzeError(
            f"malformed --grid {item!r}: write OPTION=V1,V2,... e.g. --grid seed=1,2,3"
        )
    name = field_name(option)
    if not values_text.strip():
        raise CLAnalyzeError(f"--grid {item!r} has an empty list: give at least one value")
    texts = values_text.split(",")
    if any(not t.strip() for t in texts):
        raise CLAnalyzeError(
            f"malformed --grid {item!r}: an empty value between commas; write V1,V2,..."
        )
    return name, tuple(convert_value(name, t) for t in texts)


def read_grid_file(path: Path) -> tuple[list[tuple[str, tuple[Any, ...]]], dict[str, Any]]:
    """A TOML file with a ``[grid]`` table of lists and an optional ``[fixed]`` table."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, from PyPI, before it joined the standard library
        import tomli as tomllib

    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise CLAnalyzeError(f"cannot read --grid-file {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise CLAnalyzeError(f"--grid-file {path} is not valid TOML ({error}): fix it") from None
    unknown = set(document) - {"grid", "fixed"}
    if unknown or not isinstance(document.get("grid"), dict):
        raise CLAnalyzeError(
            f"--grid-file {path} needs a [grid] table of lists (and optionally [fixed]);"
            f" found {', '.join(sorted(document)) or 'nothing'}"
        )
    grid = []
    for option, values in document["grid"].items():
        name = field_name(option)
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise CLAnalyzeError(f"--grid-file {path}: {option} is an empty list: give values")
        grid.append((name, tuple(convert_value(name, v) for v in values)))
    if not isinstance(document.get("fixed", {}), dict):
        raise CLAnalyzeError(f"--grid-file {path}: [fixed] must be a table of option = value")
    fixed = {field_name(k): v for k, v in document.get("fixed", {}).items()}
    return grid, {k: convert_value(k, v) for k, v in fixed.items()}


def sweep_spec(
    grid_items: Sequence[str] = (),
    grid_file: Path | None = None,
    fixed: Mapping[str, Any] | None = None,
    **where: Any,
) -> SweepSpec:
    """Parse ``--grid`` items, a ``--grid-file`` and fixed train options into a spec."""
    grid: list[tuple[str, tuple[Any, ...]]] = []
    file_fixed: dict[str, Any] = {}
    if grid_file is not None:
        grid, file_fixed = read_grid_file(grid_file)
    grid += [parse_grid_item(item) for item in grid_items]
    given = {
        **file_fixed,
        **{field_name(k): convert_value(field_name(k), v) for k, v in (fixed or {}).items()},
    }
    return SweepSpec(grid=tuple(grid), fixed=tuple(given.items()), **where)


def check_grid(grid: Sequence[tuple[str, tuple[Any, ...]]], fixed: Mapping[str, Any]) -> None:
    seen: set[str] = set()
    for name, values in grid:
        flag = option_flag(name)
        if name in NOT_SWEEPABLE:
            raise CLAnalyzeError(
                f"--grid {flag} is not sweepable: the sweep picks each run's device"
                " (give --device once to force one)"
            )
        if name in seen:
            raise CLAnalyzeError(f"--grid {flag} is given twice: merge its values into one list")
        if name in fixed:
            raise CLAnalyzeError(f"--{flag} is both swept and fixed: drop one of them")
        if not values:
            raise CLAnalyzeError(f"--grid {flag} has an empty list: give at least one value")
        if len(set(map(repr, values))) != len(values):
            raise CLAnalyzeError(f"--grid {flag} repeats a value: list each value once")
        seen.add(name)


# --- combinations ------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as it appears in a run's folder name: short, exact and filesystem-safe."""
    if value is None:
        text = "none"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
        if float(text) != value:
            text = repr(value)
    else:
        text = str(value)
    return "".join(c if c.isalnum() or c in ".+-" else "-" for c in text)


def combination_name(values: Mapping[str, Any]) -> str:
    return "_".join(f"{option_flag(k)}={format_value(v)}" for k, v in values.items())


def combinations(grid: Sequence[tuple[str, tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Every combination, the first axis varying slowest."""
    names = [name for name, _ in grid]
    return [
        dict(zip(names, chosen, strict=True)) for chosen in itertools.product(*(v for _, v in grid))
    ]


# --- sweep.json --------------------------------------------------------------------------------


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


def _write_sweep_json(
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


# --- what a worker runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to train one combination; picklable for processes and Ray."""

    name: str
    run_dir: str
    config: Mapping[str, Any]
    action: str
    log_path: str
    device: str = "cpu"
    threads: int | None = None


@dataclass(frozen=True)
class WorkerResult:
    state: str
    error: str | None = None


def train_combination(task: RunTask) -> WorkerResult:
    """Train or resume one run with its output in its log file; never raises."""
    from cl_analyze.progress import Reporter
    from cl_analyze.train import fit, stored_config

    run_dir = Path(task.run_dir)
    with _output_to(Path(task.log_path)):
        try:
            import torch

            if task.threads is not None:
                torch.set_num_threads(task.threads)
            config = TrainConfig.from_dict({**task.config, "device": task.device})
            print(f"[sweep] {task.action} {task.name} on {task.device}", flush=True)
            if task.action == "resume":
                # The stored config wins; a contradiction (a changed sweep) is an error.
                config = stored_config(run_dir).merge_for_resume(config.to_dict())
            fit(
                config,
                run_dir,
                resume=task.action == "resume",
                reporter=Reporter(quiet=True),
            )
        except KeyboardInterrupt:
            return WorkerResult("interrupted", "stopped by the sweep")
        except Exception as error:
            traceback.print_exc()
            text = str(error).splitlines()[0] if str(error) else ""
            return WorkerResult("failed", f"{type(error).__name__}: {text}".rstrip(": "))
    return WorkerResult("done")


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors too) to a log, then restore them:
    a Ray worker process is reused for later tasks."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


# --- backends ----------------------------------------------------------------------------------


class Backend(Protocol):
    """Runs tasks somewhere; the sweep loop starts up to ``capacity`` at a time and polls."""

    capacity: int

    def start(self, task: RunTask) -> str:
        """Start a task; returns the device it got."""
        ...

    def wait(self, timeout: float) -> list[tuple[str, WorkerResult]]:
        """Finished tasks (name, result), waiting at most ``timeout`` seconds for one."""
        ...

    def stop(self) -> None:
        """Stop every task in flight (Ctrl-C)."""
        ...

    def close(self) -> None: ...


def available_cpus() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class _Worker:
    """A long-lived worker process: it trains one task after another (imports paid once)."""

    process: multiprocessing.process.BaseProcess
    connection: Connection
    device: str
    task: str | None = None


class LocalBackend:
    """At most ``jobs`` worker processes on this machine; worker i keeps GPU i (round-robin)
    when CUDA GPUs exist, else all share the CPU cores."""

    def __init__(self, jobs: int, device: str) -> None:
        self.capacity = jobs
        if device != "auto":
            self._devices = [device] * jobs
        elif gpus := cuda_device_count():
            self._devices = [f"cuda:{i % gpus}" for i in range(jobs)]
        else:
            self._devices = ["cpu"] * jobs
        # Share the cores among the jobs so they do not oversubscribe them.
        self._threads = max(1, available_cpus() // jobs)
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * jobs

    def start(self, task: RunTask) -> str:
        slot = next(
            i for i, worker in enumerate(self._workers) if worker is None or worker.task is None
        )
        worker = self._workers[slot]
        if worker is None or not worker.process.is_alive():
            worker = self._spawn(self._devices[slot])
            self._workers[slot] = worker
        worker.connection.send(
            dataclasses.replace(task, device=worker.device, threads=self._threads)
        )
        worker.task = task.name
        return worker.device

    def _spawn(self, device: str) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_local_worker, args=(theirs,), name="sweep-worker")
        # Started with SIGINT ignored (inherited through exec), so Ctrl-C reaches only this
        # process, which then stops the workers in order.
        with _sigint_ignored():
            process.start()
        theirs.close()
        return _Worker(process, ours, device)

    def wait(self, timeout: float) -> list[tuple[str, WorkerResult]]:
        busy = [w for w in self._workers if w is not None and w.task is not None]
        if not busy:
            time.sleep(timeout)
            return []
        ready = set(
            wait_for_any([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout)
        )
        finished = []
        for slot, worker in enumerate(self._workers):
            if worker is None or worker.task is None:
                continue
            if worker.connection not in ready and worker.process.sentinel not in ready:
                continue
            result = None
            with contextlib.suppress(EOFError, OSError):
                if worker.connection.poll():
                    result = worker.connection.recv()
            if not isinstance(result, WorkerResult):
                worker.process.join()
                worker.connection.close()
                result = WorkerResult(
                    "failed", f"worker exited with code {worker.process.exitcode}"
                )
                self._workers[slot] = None
            finished.append((worker.task, result))
            worker.task = None
        return finished

    def stop(self) -> None:
        workers = [w for w in self._workers if w is not None]
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()
            worker.connection.close()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._workers = [None] * self.capacity

    def close(self) -> None:
        for worker in self._workers:
            if worker is not None and worker.task is None:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)  # done: exit the loop
        for worker in self._workers:
            if worker is not None and worker.task is None:
                worker.process.join(STOP_GRACE_SECONDS)
        self.stop()


def _local_worker(connection: Connection) -> None:
    """A spawned worker: train each task it is sent until told to stop (None) or stopped."""
    _exit_with_parent()
    # The coordinator stops a worker with SIGTERM; make it unwind so the store closes cleanly.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if task is None:
            return
        result = train_combination(task)
        with contextlib.suppress(OSError, KeyboardInterrupt):
            connection.send(result)
        if result.state == "interrupted":
            return


def _raise_keyboard_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt


def _exit_with_parent() -> None:
    """A worker whose coordinator was killed (SIGKILL, a crash) exits instead of training on."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill PID`` stops a sweep as cleanly as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the sweep ---------------------------------------------------------------------------------


@dataclass
class _Progress:
    epoch: int | None = None
    test_accuracy: float | None = None


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
    backend = _make_backend(spec, str(base.get("device", _DEFAULTS["device"])))
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
    from cl_analyze.train import next_run_dir

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
        before = merged.get(name, _DEFAULTS[name])
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
    from cl_analyze.checkpoints import LAST
    from cl_analyze.store import STORE_NAME, writer_alive

    folder = sweep_dir / name
    run = SweepRun(
        name=name, folder=folder, values=values, log=sweep_dir / LOGS_DIR / f"{name}.log"
    )
    rows = _complete_rows(folder)
    if rows is not None and rows >= config.epochs + 1:
        return dataclasses.replace(run, state="done", action="skipped")
    if writer_alive(folder):
        raise CLAnalyzeError(
            f"{folder} is being trained by another process: wait for it or stop it"
        )
    if (folder / STORE_NAME).exists() or (folder / LAST).exists():
        # Never deleted: `fit` resumes from last.pt, starts again a run killed before its first
        # checkpoint, and fails with the reason (recorded) on a store it cannot read.
        return dataclasses.replace(run, action="resume")
    return dataclasses.replace(run, action="train")


def _complete_rows(folder: Path) -> int | None:
    from cl_analyze.store import STORE_NAME, RunStore

    if not (folder / STORE_NAME).is_file():
        return None
    try:
        with RunStore(folder) as store:
            return store.rows
    except CLAnalyzeError:
        return None


def _read_progress(folder: Path) -> _Progress | None:
    from cl_analyze.store import STORE_NAME, RunStore

    if not (folder / STORE_NAME).is_file():
        return None
    try:
        with RunStore(folder) as store:
            if store.rows == 0:
                return _Progress()
            accuracy = float(store.history["test_accuracy"][-1])
            return _Progress(int(store.epochs[-1]), accuracy)
    except (CLAnalyzeError, OSError, KeyError, ValueError, IndexError):
        return None  # being created, or mid-flush: try again next poll


def _make_backend(spec: SweepSpec, device: str) -> Backend:
    if spec.backend == "ray":
        from cl_analyze.sweep_ray import RayBackend

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
    progress: dict[str, _Progress] = {}
    todo = [run.name for run in runs if run.state != "done"]
    for run in runs:
        if run.state == "done":
            seen = _read_progress(run.folder)
            if seen is not None:
                progress[run.name] = seen
    absolute_dir = sweep_dir.resolve()

    def save() -> None:
        _write_sweep_json(sweep_dir, grid, fixed, spec.backend, runs)

    def update(name: str, **changes: Any) -> None:
        runs[index[name]] = dataclasses.replace(runs[index[name]], **changes)

    # Reset states left from an earlier call (running/interrupted/failed) to pending.
    for name in todo:
        update(name, state="pending", error=None)
    save()
    # Off a terminal a live table would show only at the end: log lines instead.
    log = _Log(console, spec.quiet or not console.is_terminal, epochs)
    for run in runs:
        if run.action == "skipped":
            log.line(f"{run.name}: complete, skipped")
    interrupted = False
    with _sigterm_as_interrupt(), log.live(lambda: _table(runs, progress, epochs)) as refresh:
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
    rows = _complete_rows(folder)
    if rows != epochs + 1:
        return WorkerResult(
            "failed", f"worker finished but the store holds {rows} of {epochs + 1} rows"
        )
    return result


class _Log:
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

    def progress(self, name: str, before: _Progress | None, now: _Progress) -> None:
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


def _table(
    runs: Sequence[SweepRun], progress: Mapping[str, _Progress], epochs: Mapping[str, int]
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

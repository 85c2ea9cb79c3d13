"""What a worker runs (one combination, never raising) and what a backend must offer."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cl_analyze.config import TrainConfig

STOP_GRACE_SECONDS = 15.0


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
    from cl_analyze.training.fit import fit, stored_config

    run_dir = Path(task.run_dir)
    with _output_to(Path(task.log_path)), _threads(task.threads):
        try:
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
        except Exception as error:  # a worker reports every failure instead of dying with it
            traceback.print_exc()
            text = str(error).splitlines()[0] if str(error) else ""
            return WorkerResult("failed", f"{type(error).__name__}: {text}".rstrip(": "))
    return WorkerResult("done")


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's thread count for one task, restored after: a Ray worker process is reused for
    later tasks, which must not inherit it."""
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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


def raise_keyboard_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt

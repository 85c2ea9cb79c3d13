"""The local backend: long-lived worker processes here, one GPU each where there are GPUs."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any

from cl_analyze.sweep.task import (
    STOP_GRACE_SECONDS,
    RunTask,
    WorkerResult,
    available_cpus,
    cuda_device_count,
    raise_keyboard_interrupt,
    train_combination,
)


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
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
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

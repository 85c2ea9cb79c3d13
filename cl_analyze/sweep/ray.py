"""The Ray backend of ``cl-analyze sweep``: each run is a Ray task on a cluster, or on a local
Ray instance started for the call. Ray is imported here only, and only when asked for.

Workers write their run folders directly, so the sweep folder must be a path every node sees
(a shared filesystem); the coordinator reads the same stores to show progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from typing import Any

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.sweep.task import (
    STOP_GRACE_SECONDS,
    RunTask,
    WorkerResult,
    available_cpus,
    train_combination,
)

CONNECT_TIMEOUT_SECONDS = 3.0
# What ray.init raises for an unreachable or mismatched cluster or bad options (beside RayError):
# ConnectionError and timeouts are OSErrors; a version mismatch or a second init, RuntimeError.
INIT_ERRORS: tuple[type[Exception], ...] = (OSError, RuntimeError, ValueError)
# Addresses Ray resolves itself (RAY_ADDRESS, the latest local cluster): nothing to probe.
SELF_RESOLVED = ("auto", "local")


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Fail in seconds, in one line, when nothing listens at a Ray address (ray.init would
    retry for a long time)."""
    if address in SELF_RESOLVED:
        return
    text = address.removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise CLAnalyzeError(
            f"--address {address!r} is not HOST:PORT: use e.g. 10.0.0.5:6379, ray://HOST:10001"
            " or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CLAnalyzeError(
            f"no Ray cluster answers at {address} ({reason}): start one with `ray start --head`"
            " or fix --address"
        ) from None


class RayBackend:
    """Runs tasks with Ray core: one GPU per run when the cluster has GPUs, else one CPU."""

    def __init__(self, address: str | None, jobs: int | None, device: str) -> None:
        if address is not None:
            check_reachable(address)
        try:
            import ray
        except ImportError:
            raise CLAnalyzeError(
                "the Ray backend needs Ray: pip install 'cl-analyze[ray]', or use --backend local"
            ) from None
        self._ray = ray
        self._owns_ray = False
        self._in_flight: dict[Any, str] = {}
        # ray.init installs its own SIGTERM handler and ray.shutdown leaves it: put ours back.
        self._handlers = _signal_handlers()
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            init_errors: tuple[type[Exception], ...] = (*INIT_ERRORS, ray.exceptions.RayError)
            try:
                if address is None:
                    ray.init(num_cpus=jobs or 1, include_dashboard=False, **options)
                else:
                    ray.init(address=address, **options)
            except init_errors as error:
                _restore_signal_handlers(self._handlers)
                first_line = (str(error).splitlines() or [type(error).__name__])[0]
                raise CLAnalyzeError(
                    f"cannot start or join Ray at {address or 'a local instance'} ({first_line}):"
                    " check --address and that the cluster's Ray version matches"
                ) from None
            self._owns_ray = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if device.startswith("cuda") and gpus == 0:
            self.close()
            raise CLAnalyzeError(f"--device {device} asked for, but the Ray cluster has no GPU")
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
        # Ray hides the other GPUs from a task (CUDA_VISIBLE_DEVICES): its one GPU is "cuda".
        self._device = "cuda" if use_gpu else "cpu"
        self.capacity = jobs or max(1, gpus if use_gpu else int(resources.get("CPU", 1)))
        # On a cluster Ray sets each task's threads from its CPUs; a local instance shares ours.
        self._threads = (
            max(1, available_cpus() // self.capacity) if address is None and not use_gpu else None
        )
        self._remote = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=0)(
            train_combination
        )

    def start(self, task: RunTask) -> str:
        task = dataclasses.replace(task, device=self._device, threads=self._threads)
        self._in_flight[self._remote.remote(task)] = task.name
        return self._device

    def wait(self, timeout: float) -> list[tuple[str, WorkerResult]]:
        if not self._in_flight:
            time.sleep(timeout)
            return []
        refs = list(self._in_flight)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        return [(self._in_flight.pop(ref), self._result(ref)) for ref in ready]

    def _result(self, ref: Any) -> WorkerResult:
        try:
            result = self._ray.get(ref)
        except self._ray.exceptions.RayError as error:  # a crashed worker or node, a cancel
            first_line = (str(error).splitlines() or [""])[0]
            return WorkerResult("failed", f"{type(error).__name__}: {first_line}")
        if not isinstance(result, WorkerResult):
            return WorkerResult("failed", f"the task returned {result!r}")
        return result

    def stop(self) -> None:
        """Cancel gently first (KeyboardInterrupt in the task, so its store closes and its
        lock goes), then by force: a lock left on another node would block a resume."""
        refs = list(self._in_flight)
        # A task that already finished, or a cluster already gone, is no reason to stop stopping.
        gone = (self._ray.exceptions.RayError, ValueError)
        for ref in refs:
            with contextlib.suppress(*gone):
                self._ray.cancel(ref, force=False)
        if refs:
            with contextlib.suppress(*gone):
                self._ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_SECONDS)
        for ref in refs:
            with contextlib.suppress(*gone):
                self._ray.cancel(ref, force=True)
        self._in_flight.clear()

    def close(self) -> None:
        self.stop()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
            _restore_signal_handlers(self._handlers)


def _signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread handles signals (and may set handlers)
    return {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for number, handler in handlers.items():
        if handler is not None:  # None: a handler not installed from Python, nothing to restore
            signal.signal(number, handler)

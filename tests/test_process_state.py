"""What a call changes for the whole process, it puts back: determinism switches, cuBLAS's
variable and the RNG after training, thread counts after a sweep task and the silhouette, the
matplotlib backend after a report. (conftest.py's autouse guard checks every test as well.)"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from conftest import tiny_config

from cl_analyze.metrics.silhouette import silhouette
from cl_analyze.report import ReportOptions, build_report
from cl_analyze.store import RunWriter
from cl_analyze.sweep.task import RunTask, train_combination
from cl_analyze.training.fit import fit


def test_training_puts_back_determinism_cublas_and_the_rng(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    expected_draw = torch.rand(3)
    torch.set_rng_state(rng)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    assert before == (False, False, False, None)  # the process defaults, which training changes

    for deterministic in (True, False):  # each branch of the switches
        config = tiny_config(deterministic=deterministic, epochs=1, limit_train=32)
        fit(config, tmp_path / f"deterministic={deterministic}")
        after = (
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
        assert after == before
    # The caller's random stream goes on as if training had not drawn from it (nor seeded it).
    assert torch.equal(torch.rand(3), expected_draw)


def test_a_sweep_task_puts_back_torch_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray worker process runs task after task: one task's thread count must not stay."""
    torch.set_num_threads(2)
    calls: list[int] = []
    set_threads = torch.set_num_threads

    def recording(count: int) -> None:
        calls.append(count)
        set_threads(count)

    monkeypatch.setattr(torch, "set_num_threads", recording)
    task = RunTask(
        name="offline",
        run_dir=str(tmp_path / "run"),
        # Fails fast (no mnist files offline): the thread count must come back all the same.
        config={"dataset": "mnist", "data_dir": str(tmp_path / "none"), "download": False},
        action="train",
        log_path=str(tmp_path / "logs" / "offline.log"),
        threads=1,
    )
    result = train_combination(task)
    assert result.state == "failed" and "mnist not found" in str(result.error)
    assert calls == [1, 2]  # set for the task, then put back
    assert torch.get_num_threads() == 2


def test_the_silhouette_puts_back_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(2)
    seen: list[int] = []
    original = torch.sub

    def recording_sub(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "sub", recording_sub)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 2)).astype(np.float32)
    labels = np.arange(60) % 3
    assert silhouette(points, labels) is not None
    assert seen and set(seen) == {1}  # each op on one thread while the blocks run in threads
    assert torch.get_num_threads() == 2


def test_a_report_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(3), 10)
    with RunWriter.create(
        tmp_path / "run" / "run.h5",
        dataset="toy",
        class_names=["a", "b", "c"],
        feat_dim=2,
        splits={"test": (labels, np.arange(30))},
        history_names=("test_accuracy",),
        with_centers=False,
    ) as writer:
        for epoch in range(3):
            points = np.random.default_rng(epoch).normal(size=(30, 2)) + labels[:, None]
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": 0.5 + 0.1 * epoch},
                features={"test": points},
                predictions={"test": labels},
            )
    matplotlib.use("svg")  # a notebook's choice (any backend but the Agg the report draws on)
    try:
        build_report([tmp_path / "run"], ReportOptions(out=tmp_path / "report", animation=False))
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use("Agg")
    assert (tmp_path / "report" / "figures").is_dir()

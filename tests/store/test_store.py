"""The run store: schema, partial epochs invisible, readers beside a live writer, crash safety."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, RunWriter, run_lock, writer_alive


def make_writer(path: Path, with_centers: bool = True) -> RunWriter:
    labels = np.array([0, 1, 1, 2])
    return RunWriter.create(
        path,
        dataset="toy",
        class_names=["a", "b", "c"],
        feat_dim=2,
        splits={"train": (labels, np.arange(4)), "test": (labels[:3], np.arange(3))},
        history_names=["test_accuracy", "lr"],
        with_centers=with_centers,
        config={"loss": "center", "lr": 0.1},
    )


def row(epoch: int) -> dict:
    return {
        "features": {
            "train": np.full((4, 2), epoch, dtype=np.float32),
            "test": np.full((3, 2), -epoch, dtype=np.float32),
        },
        "predictions": {"train": np.array([0, 1, 2, 2]), "test": np.array([0, 1, 1])},
        "centers": np.full((3, 2), 10 * epoch, dtype=np.float32),
        "scalars": {"test_accuracy": epoch / 10, "lr": 0.1},
    }


def test_round_trip_with_plain_h5py_and_the_reader(tmp_path: Path) -> None:
    with make_writer(tmp_path / "run.h5") as writer:
        for epoch in range(3):
            writer.append_epoch(epoch, **row(epoch))
    with h5py.File(tmp_path / "run.h5", "r") as handle:  # plain h5py reads it
        assert handle.attrs["epochs_complete"] == 3
        assert handle["train/features"].shape == (3, 4, 2)
        assert handle["train/features"].chunks == (1, 4, 2)
        assert json.loads(handle.attrs["class_names"]) == ["a", "b", "c"]
    with RunStore(tmp_path) as store:
        assert store.epochs.tolist() == [0, 1, 2]
        assert store.features("test", 2)[0].tolist() == [-2, -2]
        assert store.features("train").shape == (3, 4, 2)
        assert store.centers(1)[0].tolist() == [10, 10]
        assert store.history["test_accuracy"].tolist() == [0, 0.1, 0.2]
        assert store.labels("train").tolist() == [0, 1, 1, 2]
        assert store.config == {"loss": "center", "lr": 0.1}


def test_reader_sees_only_complete_epochs_while_the_writer_is_open(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "run.h5")
    writer.append_epoch(0, **row(0))
    # A half-written epoch: data resized and written, completion mark not yet set.
    features = writer._file["train/features"]
    features.resize(2, axis=0)
    features[1] = 99
    features.flush()
    with RunStore(tmp_path) as store:
        assert store.rows == 1
        assert store.features("train").shape == (1, 4, 2)
        assert store.history["lr"].shape == (1,)
    writer.close()


def test_softmax_store_has_no_centers(tmp_path: Path) -> None:
    with make_writer(tmp_path / "run.h5", with_centers=False) as writer:
        writer.append_epoch(0, **{**row(0), "centers": None})
    with RunStore(tmp_path) as store:
        assert store.centers() is None and not store.has_centers


def test_resume_drops_rows_after_the_kept_ones(tmp_path: Path) -> None:
    with make_writer(tmp_path / "run.h5") as writer:
        for epoch in range(4):
            writer.append_epoch(epoch, **row(epoch))
    with RunWriter.resume(tmp_path / "run.h5", keep_rows=2) as writer:
        writer.append_epoch(2, **row(5))
    with RunStore(tmp_path) as store:
        assert store.epochs.tolist() == [0, 1, 2]
        assert store.features("train", 2)[0, 0] == 5
        assert store.config == {"loss": "center", "lr": 0.1}


def test_missing_and_foreign_stores_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CLAnalyzeError, match="no run store"):
        RunStore(tmp_path)
    with h5py.File(tmp_path / "run.h5", "w") as handle:
        handle["x"] = 1
    with pytest.raises(CLAnalyzeError, match="not a cl-analyze run store"):
        RunStore(tmp_path)


def test_run_lock_admits_one_writer_and_takes_over_a_dead_ones(tmp_path: Path) -> None:
    with run_lock(tmp_path, "train"):
        assert writer_alive(tmp_path)
        busy = pytest.raises(CLAnalyzeError, match="being written by another process")
        with busy, run_lock(tmp_path, "metrics"):
            pass
    assert not (tmp_path / "run.lock").exists() and not writer_alive(tmp_path)
    # A crashed writer's lock: its process is gone, so the lock is taken over.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "run.lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()} train\n")
    assert not writer_alive(tmp_path)
    with run_lock(tmp_path, "metrics"):
        assert "metrics" in (tmp_path / "run.lock").read_text()

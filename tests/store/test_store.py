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
from conftest import write_toy_store

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


# --- the schema as the reader checks it --------------------------------------------------------

ROOT_ATTRIBUTES = {  # the README's table of root attributes, and their types
    "format": str,
    "schema_version": int,
    "epochs_complete": int,
    "config": str,
    "dataset": str,
    "class_names": str,
    "num_classes": int,
    "feat_dim": int,
    "package_version": str,
    "torch_version": str,
    "device": str,
    "hardware": str,
    "hostname": str,
    "created": str,
}


def test_a_trained_store_has_every_documented_root_attribute(center_run: Path) -> None:
    import torch

    import cl_analyze

    with h5py.File(center_run / "run.h5", "r") as handle:
        attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in handle.attrs.items()}
    for name, kind in ROOT_ATTRIBUTES.items():
        assert isinstance(attrs.get(name), kind), name
    assert (attrs["format"], attrs["schema_version"]) == ("cl-analyze-run", 2)
    assert attrs["epochs_complete"] == 3 and attrs["num_classes"] == 10 and attrs["feat_dim"] == 2
    assert json.loads(attrs["class_names"]) == list("0123456789")
    assert json.loads(attrs["config"])["loss"] == "center"
    assert attrs["package_version"] == cl_analyze.__version__
    assert attrs["torch_version"] == str(torch.__version__)
    assert attrs["hostname"] == socket.gethostname() and attrs["device"] == "cpu"


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_schema_version_is_checked_against_what_the_reader_supports(
    tmp_path: Path, version: int
) -> None:
    from cl_analyze.store import SCHEMA_VERSION

    with make_writer(tmp_path / "run.h5") as writer:
        writer.append_epoch(0, **row(0))
    with h5py.File(tmp_path / "run.h5", "r+") as handle:
        handle.attrs["schema_version"] = version
    if version <= SCHEMA_VERSION:
        with RunStore(tmp_path) as store:
            assert store.schema_version == version and store.rows == 1
        return
    with pytest.raises(CLAnalyzeError) as info:
        RunStore(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "upgrade cl-analyze" in message
    assert (
        f"schema version {version}, newer than this cl-analyze reads ({SCHEMA_VERSION})" in message
    )


def test_rows_beyond_the_complete_ones_and_missing_splits_are_one_line(tmp_path: Path) -> None:
    write_toy_store(tmp_path / "run.h5", epochs=3)
    with RunStore(tmp_path) as store:
        assert store.features("test", -1)[0].tolist() == [2, 2]  # counted from the end
        for row in (3, -4):
            with pytest.raises(CLAnalyzeError, match=f"row {row} is not complete .*3 rows"):
                store.features("test", row)
        with pytest.raises(CLAnalyzeError, match=r"holds no 'train' split \(it has test\)"):
            store.labels("train")
        with pytest.raises(CLAnalyzeError, match="no train features"):
            store.features("train")


def test_a_kill_inside_the_epoch_commit_never_leaves_features_without_a_classifier(
    tmp_path: Path,
) -> None:
    """Killed after the epoch's features are flushed and before its classifier is: the epoch
    stays invisible and the earlier ones read back whole, classifier included."""
    from conftest import KILLED, die, run_forked

    path = tmp_path / "run.h5"

    def write_then_die_in_the_commit() -> None:
        weight, bias = np.ones((3, 2)), np.arange(3.0)
        writer = RunWriter.create(
            path,
            dataset="toy",
            class_names=["a", "b", "c"],
            feat_dim=2,
            splits={"test": (np.array([0, 1, 1]), np.arange(3))},
            history_names=["test_accuracy"],
            with_centers=False,
            with_classifier=True,
        )
        test_row = {
            "features": {"test": np.zeros((3, 2))},
            "predictions": {"test": np.array([0, 1, 1])},
            "scalars": {"test_accuracy": 0.5},
        }
        writer.append_epoch(0, classifier=(weight, bias), **test_row)
        flush = h5py.Dataset.flush

        def flush_or_die(dataset: h5py.Dataset) -> None:
            if dataset.name == "/classifier/weight":
                die()
            flush(dataset)

        h5py.Dataset.flush = flush_or_die  # type: ignore[method-assign]
        writer.append_epoch(1, classifier=(2 * weight, bias), **test_row)

    assert run_forked(write_then_die_in_the_commit) == KILLED
    with RunStore(tmp_path) as store:
        assert store.rows == 1 and store.has_classifier
        weight, bias = store.classifier(0)
        assert weight.tolist() == [[1, 1]] * 3 and bias.tolist() == [0, 1, 2]
        assert store.features("test").shape == (1, 3, 2)

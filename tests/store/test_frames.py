"""The notebook API (history_frame, embeddings_frame, RunStore.to_xarray) against the arrays
read with plain h5py; HDF5 dimension scales through writing, SWMR reading and resume."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cl_analyze.analysis import embeddings_frame, history_frame
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, RunWriter

LABELS = np.array([0, 1, 1, 2])


def write_run(path: Path, epochs: int = 3, *, close: bool = True) -> RunWriter:
    writer = RunWriter.create(
        path,
        dataset="toy",
        class_names=["a", "b", "c"],
        feat_dim=2,
        splits={"train": (LABELS, np.arange(4)), "test": (LABELS[:3], np.array([7, 5, 3]))},
        history_names=["test_accuracy", "lr"],
        with_centers=True,
    )
    for epoch in range(epochs):
        append(writer, epoch)
    if close:
        writer.close()
    return writer


def append(writer: RunWriter, epoch: int) -> None:
    rng = np.random.default_rng(epoch)
    writer.append_epoch(
        epoch,
        scalars={"test_accuracy": epoch / 10, "lr": 0.1 / (epoch + 1)},
        features={"train": rng.normal(size=(4, 2)), "test": rng.normal(size=(3, 2))},
        predictions={"train": np.array([0, 1, 2, 2]), "test": np.array([0, 2, 1])},
        centers=np.full((3, 2), epoch, dtype=np.float32),
    )


def test_history_frame_is_epoch_by_scalar(tmp_path: Path) -> None:
    write_run(tmp_path / "run.h5")
    frame = history_frame(tmp_path)
    with h5py.File(tmp_path / "run.h5", "r") as handle:
        assert frame.index.name == "epoch"
        assert frame.index.tolist() == handle["epochs"][()].tolist()
        assert sorted(frame.columns) == sorted(handle["history"])
        for name in handle["history"]:
            np.testing.assert_array_equal(frame[name].to_numpy(), handle["history"][name][()])


def test_embeddings_frame_holds_one_epoch_of_one_split(tmp_path: Path) -> None:
    write_run(tmp_path / "run.h5")
    frame = embeddings_frame(tmp_path, "test", 1)
    with h5py.File(tmp_path / "run.h5", "r") as handle:
        features = handle["test/features"][1]
    assert list(frame.columns) == ["sample", "label", "class", "prediction", "correct", "f0", "f1"]
    assert frame["sample"].tolist() == [7, 5, 3]
    assert frame["class"].tolist() == ["a", "b", "b"]
    assert frame["correct"].tolist() == [True, False, True]
    np.testing.assert_array_equal(frame[["f0", "f1"]].to_numpy(), features)
    last = embeddings_frame(tmp_path, "train")  # the last epoch by default
    with h5py.File(tmp_path / "run.h5", "r") as handle:
        np.testing.assert_array_equal(last[["f0", "f1"]].to_numpy(), handle["train/features"][2])
    with pytest.raises(CLAnalyzeError, match=r"holds no epoch 9: pick one of 0\.\.2"):
        embeddings_frame(tmp_path, "test", 9)
    with pytest.raises(CLAnalyzeError, match="no 'valid' split"):
        embeddings_frame(tmp_path, "valid", 0)


def test_to_xarray_has_named_dimensions_and_coordinates(tmp_path: Path) -> None:
    pytest.importorskip("xarray", reason="pip install 'cl-analyze[xarray]'")
    write_run(tmp_path / "run.h5")
    with RunStore(tmp_path) as store:
        data = store.to_xarray("train")
    with h5py.File(tmp_path / "run.h5", "r") as handle:
        assert data["features"].dims == ("epoch", "sample", "dim")
        assert data["centers"].dims == ("epoch", "class", "dim")
        assert data["lr"].dims == ("epoch",)
        assert data["epoch"].values.tolist() == [0, 1, 2]
        assert data["class"].values.tolist() == ["a", "b", "c"]
        np.testing.assert_array_equal(data["features"].values, handle["train/features"][()])
        # Label-based selection, what the names are for.
        picked = data["features"].sel(epoch=2, dim=1).values
        np.testing.assert_array_equal(picked, handle["train/features"][2, :, 1])
        np.testing.assert_array_equal(data["predictions"].values, handle["train/predictions"][()])


def test_to_xarray_without_the_extra_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import sys

    write_run(tmp_path / "run.h5")
    monkeypatch.setitem(sys.modules, "xarray", None)  # as if not installed
    with RunStore(tmp_path) as store, pytest.raises(CLAnalyzeError, match=r"cl-analyze\[xarray\]"):
        store.to_xarray()


def scale_names(dataset: h5py.Dataset) -> list[str]:
    return [
        dataset.dims[axis][0].name if len(dataset.dims[axis]) else ""
        for axis in range(dataset.ndim)
    ]


def labels_of(dataset: h5py.Dataset) -> list[str]:
    return [dataset.dims[axis].label for axis in range(dataset.ndim)]


def check_dimensions(handle: h5py.File) -> None:
    features = handle["test/features"]
    assert labels_of(features) == ["epoch", "sample", "dim"]
    assert scale_names(features) == ["/epochs", "/test/indices", ""]
    assert labels_of(handle["centers"]) == ["epoch", "class", "dim"]
    assert scale_names(handle["history/lr"]) == ["/epochs"]
    assert scale_names(handle["train/labels"]) == ["/train/indices"]
    # The scale's values are the coordinates.
    assert features.dims[1][0][()].tolist() == [7, 5, 3]


def test_dimension_scales_survive_swmr_writing_and_resume(tmp_path: Path) -> None:
    writer = write_run(tmp_path / "run.h5", epochs=2, close=False)
    # Read while the writer still appends (SWMR).
    with h5py.File(tmp_path / "run.h5", "r", swmr=True, libver="latest") as handle:
        check_dimensions(handle)
        append(writer, 2)
        handle["epochs"].refresh()
        assert handle["epochs"].shape == (3,)
    with RunStore(tmp_path) as store:
        assert store.rows == 3
    writer.close()
    # Resume rebuilds the file: the scales are attached anew in the copy, never dangling.
    with RunWriter.resume(tmp_path / "run.h5", keep_rows=2) as resumed:
        append(resumed, 2)
        append(resumed, 3)
    with h5py.File(tmp_path / "run.h5", "r") as handle:
        check_dimensions(handle)
        assert handle["epochs"][()].tolist() == [0, 1, 2, 3]
        assert handle["test/features"].dims[0][0][()].tolist() == [0, 1, 2, 3]

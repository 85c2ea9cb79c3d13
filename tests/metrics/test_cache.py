"""Per-epoch metrics of a run store: the tidy frame, the /metrics cache, CSV export."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from cl_analyze.analysis import export_metrics_csv, load_metrics
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics import cache as analysis
from cl_analyze.metrics import split_metrics
from cl_analyze.store import RunStore, RunWriter

CLASSES = ("zero", "one", "two")
WHOLE = {
    "intra_mean",
    "intra_rms",
    "intra_center_mean",
    "intra_center_rms",
    "inter_min",
    "inter_mean",
    "inter_intra_ratio",
    "fisher",
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "feature_norm",
    "angular_spread",
    "cosine_to_class",
    "center_norm",
    "center_min_distance",
    "center_mean_distance",
}
# Test split only: against the train split (retrieval) or of the queries alone (NMI, AMI).
RETRIEVAL = {
    "ncm_accuracy",
    "knn_accuracy",
    "map_at_r",
    "r_precision",
    "precision_at_1",
    "nmi",
    "ami",
}


def synthetic_features(epoch: int, labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + epoch)
    angles = labels * 2 * np.pi / len(CLASSES)
    radius = 1.0 + epoch
    centres = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    return (centres + rng.normal(0, 0.4, (len(labels), 2))).astype(np.float32)


def write_store(
    path: Path,
    epochs: int = 3,
    *,
    with_train: bool = True,
    keep_open: bool = False,
    poison: tuple[int, str] | None = None,
) -> tuple[RunWriter, dict[str, np.ndarray]]:
    labels = {"train": np.arange(90) % 3, "test": np.arange(30) % 3}
    writer = RunWriter.create(
        path,
        dataset="synthetic",
        class_names=CLASSES,
        feat_dim=2,
        splits={name: (y, np.arange(len(y))) for name, y in labels.items()},
        history_names=("test_accuracy",),
        with_centers=True,
        evaluated_splits=("train", "test") if with_train else ("test",),
    )
    for epoch in range(epochs):
        features = {
            name: synthetic_features(epoch, y, seed=len(y))
            for name, y in labels.items()
            if with_train or name == "test"
        }
        if poison is not None and poison[0] == epoch:
            features[poison[1]][0, 0] = np.inf
        writer.append_epoch(
            epoch,
            scalars={"test_accuracy": 0.5},
            features=features,
            centers=np.eye(3, 2, dtype=np.float32) * (epoch + 1),
        )
    if not keep_open:
        writer.close()
    return writer, labels


def test_frame_matches_direct_computation(tmp_path: Path) -> None:
    _, labels = write_store(tmp_path / "run" / "run.h5")
    frame = load_metrics(tmp_path / "run")
    assert list(frame.columns) == ["epoch", "split", "metric", "class", "value"]
    assert sorted(frame.epoch.unique()) == [0, 1, 2]
    whole = frame[frame["class"] == ""]
    assert set(whole[whole.split == "train"].metric) == WHOLE
    assert set(whole[whole.split == "test"].metric) == WHOLE | RETRIEVAL
    per_class = frame[frame["class"] != ""]
    assert set(per_class["class"]) == set(CLASSES)
    # Epoch 2 on test, recomputed here straight from the arrays.
    train = (synthetic_features(2, labels["train"], 90), labels["train"])
    expected = split_metrics(
        synthetic_features(2, labels["test"], 30),
        labels["test"],
        3,
        centers=np.eye(3, 2, dtype=np.float32) * 3,
        reference=train,
    )
    got = frame[(frame.epoch == 2) & (frame.split == "test")]
    assert len(got) == len(expected)
    for (metric, klass), value in expected.items():
        name = "" if klass is None else CLASSES[klass]
        row = got[(got.metric == metric) & (got["class"] == name)]
        assert row.value.item() == pytest.approx(value)


def test_cache_is_written_reused_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    write_store(run / "run.h5")
    first = load_metrics(run)
    with h5py.File(run / "run.h5", "r") as handle:
        assert handle["metrics"].attrs["metrics_version"] == analysis.METRICS_VERSION
        assert sorted(handle["metrics"]) == ["epoch_00000", "epoch_00001", "epoch_00002"]
        assert len(handle["metrics/epoch_00001/value"]) == len(first[first.epoch == 1])

    calls: list[str] = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(str(kwargs.get("where")))
        return split_metrics(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analysis, "split_metrics", counting)
    second = load_metrics(run)
    assert calls == []
    pd.testing.assert_frame_equal(first, second)

    monkeypatch.setattr(analysis, "METRICS_VERSION", analysis.METRICS_VERSION + 1)
    third = load_metrics(run)
    assert len(calls) == 6  # 3 epochs x 2 splits recomputed
    pd.testing.assert_frame_equal(first, third)
    with h5py.File(run / "run.h5", "r") as handle:
        assert handle["metrics"].attrs["metrics_version"] == analysis.METRICS_VERSION


def test_store_being_written_is_computed_but_not_cached(tmp_path: Path) -> None:
    run = tmp_path / "run"
    writer, _ = write_store(run / "run.h5", epochs=2, keep_open=True)
    try:
        frame = load_metrics(run)  # the lock names this live process: a trainer is "alive"
        assert sorted(frame.epoch.unique()) == [0, 1]
    finally:
        writer.close()
    with h5py.File(run / "run.h5", "r") as handle:
        assert "metrics" not in handle
        assert handle.attrs["epochs_complete"] == 2


def test_test_only_store_has_no_retrieval(tmp_path: Path) -> None:
    write_store(tmp_path / "run" / "run.h5", with_train=False)
    frame = load_metrics(tmp_path / "run")
    assert set(frame.split) == {"test"}
    assert not {"knn_accuracy", "ncm_accuracy"} & set(frame.metric)


def test_non_finite_features_name_epoch_and_split(tmp_path: Path) -> None:
    write_store(tmp_path / "run" / "run.h5", poison=(1, "train"))
    with pytest.raises(CLAnalyzeError, match="epoch 1 split train"):
        load_metrics(tmp_path / "run")


def test_export_csv_round_trips(tmp_path: Path) -> None:
    write_store(tmp_path / "run" / "run.h5", epochs=2)
    path = export_metrics_csv(tmp_path / "run", tmp_path / "out" / "metrics.csv")
    assert path.read_text().splitlines()[0] == "epoch,split,metric,class,value"
    back = pd.read_csv(path, keep_default_na=False)
    frame = load_metrics(tmp_path / "run")
    np.testing.assert_allclose(back.value.to_numpy(), frame.value.to_numpy(), rtol=1e-12)
    assert back["class"].astype(str).tolist() == frame["class"].tolist()


def test_class_mean_distances_is_exposed() -> None:
    features = np.array([[0, 0], [0, 2], [3, 1]], dtype=np.float32)
    from cl_analyze.analysis import class_mean_distances  # the notebook API

    matrix = class_mean_distances(features, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(matrix, [[0, 3], [3, 0]])


def test_real_run_store(center_run: Path) -> None:
    frame = load_metrics(center_run)
    assert sorted(frame.epoch.unique()) == [0, 1, 2]
    assert np.isfinite(frame.value).all()
    assert "center_min_distance" in set(frame.metric)


def test_crashed_writer_store_still_reads_after_metrics(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tmp_path / "run"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_cache import write_store\n"
        "from cl_analyze.store import run_lock\n"
        "write_store(Path(sys.argv[1]), epochs=2, keep_open=True)\n"
        "held = run_lock(Path(sys.argv[1]).parent, 'train')\n"
        "held.__enter__()\n"
        "os._exit(0)  # killed: the SWMR-writer flag and the lock stay behind\n"
    )
    tests_dir = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", script, str(run / "run.h5"), tests_dir], check=True)
    assert (run / "run.lock").exists()  # the file stays; its flock died with the process
    frame = load_metrics(run)
    assert sorted(frame.epoch.unique()) == [0, 1]
    # No live writer: the crash's write flag is cleared and the metrics are cached.
    with h5py.File(run / "run.h5", "r") as handle:
        assert handle["metrics"].attrs["metrics_version"] == analysis.METRICS_VERSION
    pd.testing.assert_frame_equal(load_metrics(run), frame)
    with RunStore(run) as store:
        assert store.rows == 2
        labels = np.arange(30) % 3
        np.testing.assert_array_equal(store.features("test", 1), synthetic_features(1, labels, 30))
    RunWriter.resume(run / "run.h5", keep_rows=2).close()  # training could continue

"""Per-class accuracy, flips and per-sample margins on hand-placed stores with planted flips."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cl_analyze.analysis import flips, load_metrics, margins
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics.dynamics import class_accuracy, classifier_geometry, sample_geometry
from cl_analyze.store import RunStore, RunWriter

# Four classes with weights along the axes and no bias: class k owns the quarter-plane around
# its axis, and the boundaries are the diagonals.
AXES = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
ZERO_BIAS = np.zeros(4)


def test_margins_of_hand_placed_samples() -> None:
    features = np.array([[3.0, 1.0], [0.0, 2.0], [1.0, 2.0]])
    labels = np.array([0, 1, 0])  # the last one lies in class 1's region: misclassified
    got = classifier_geometry(features, labels, AXES, ZERO_BIAS)
    # (3, 1): logits 3, 1, -3, -1; the nearest boundary is the diagonal x = y.
    assert got["logit_margin"][0] == pytest.approx(2.0)
    assert got["rival"][0] == 1
    assert got["boundary_distance"][0] == pytest.approx(abs(3 - 1) / math.sqrt(2))
    own = math.degrees(math.atan2(1, 3))
    assert got["angle"][0] == pytest.approx(own)
    assert got["angular_margin"][0] == pytest.approx((90 - own) - own)
    # (0, 2) of class 1: both diagonals are sqrt(2) away; logits 0, 2, 0, -2.
    assert got["logit_margin"][1] == pytest.approx(2.0)
    assert got["boundary_distance"][1] == pytest.approx(math.sqrt(2))
    assert got["angular_margin"][1] == pytest.approx(90.0)
    # (1, 2) labelled 0: logits 1, 2: a negative margin, past the diagonal by 1/sqrt(2).
    assert got["logit_margin"][2] == pytest.approx(-1.0)
    assert got["boundary_distance"][2] == pytest.approx(-1 / math.sqrt(2))
    assert got["angular_margin"][2] < 0


def test_boundary_distance_is_the_distance_to_the_region_edge() -> None:
    """Against a brute force: the nearest point of a fine grid that the classifier (with
    biases) assigns to another class."""
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=(5, 2)) * 2, rng.normal(size=5)
    step = 0.02
    axis = np.arange(-5, 5, step)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    grid_class = (grid @ weight.T + bias).argmax(1)
    features = rng.uniform(-3, 3, size=(20, 2))
    labels = (features @ weight.T + bias).argmax(1)  # all correctly classified
    got = classifier_geometry(features, labels, weight, bias)["boundary_distance"]
    for x, label, distance in zip(features, labels, got, strict=True):
        other = grid[grid_class != label]
        nearest = np.sqrt(((other - x) ** 2).sum(1)).min()
        assert distance == pytest.approx(nearest, abs=2 * step)


def test_distances_to_class_mean_and_center() -> None:
    features = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    labels = np.array([0, 0, 1])
    centers = np.array([[1.0, 1.0], [5.0, 2.0]])
    got = sample_geometry(features, labels, 2, centers=centers)
    assert got.mean_distance.tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert got.center_distance.tolist() == pytest.approx([math.sqrt(2), math.sqrt(2), 3.0])
    assert got.norm.tolist() == pytest.approx([0.0, 2.0, math.hypot(5, 5)])
    assert got.logit_margin is None  # no classifier given


def test_class_accuracy_counts_each_class() -> None:
    labels = np.array([0, 0, 1, 1, 1, 3])
    predictions = np.array([[0, 1, 1, 1, 0, 3], [0, 0, 0, 0, 0, 0]])
    got = class_accuracy(predictions, labels, 4)
    assert got[0].tolist()[:2] == [0.5, pytest.approx(2 / 3)]
    assert math.isnan(got[0][2]) and got[0][3] == 1.0
    assert got[1].tolist()[:2] == [1.0, 0.0]


# --- a store with planted flips ------------------------------------------------------------

# 8 test samples, classes 0-3 twice each, at 3 epochs; test accuracy 4/8, 7/8 (the peak), 5/8.
TEST_LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
PLANTED_PREDICTIONS = np.array(
    [
        [0, 1, 1, 0, 2, 3, 3, 0],
        [0, 0, 1, 1, 2, 2, 3, 0],  # peak: only sample 7 wrong
        [0, 2, 1, 1, 3, 3, 3, 3],  # samples 1, 4, 5 lost (0->2, 2->3, 2->3); sample 7 gained
    ]
)


def planted_store(
    path: Path, *, with_classifier: bool = True, version: int | None = None
) -> np.ndarray:
    """A store whose features sit on the axes, so the stored predictions are the argmax of
    the axis classifier; returns the test features (E, N, 2)."""
    features = np.zeros((3, 8, 2), dtype=np.float32)
    for epoch, predicted in enumerate(PLANTED_PREDICTIONS):
        radius = 1.0 + epoch  # norms grow with the epochs
        features[epoch] = AXES[predicted] * radius + 0.1 * AXES[(predicted + 1) % 4]
    with RunWriter.create(
        path,
        dataset="toy",
        class_names=list("abcd"),
        feat_dim=2,
        splits={"test": (TEST_LABELS, np.arange(100, 108))},
        history_names=["test_accuracy"],
        with_centers=False,
        with_classifier=with_classifier,
    ) as writer:
        for epoch, predicted in enumerate(PLANTED_PREDICTIONS):
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": float((predicted == TEST_LABELS).mean())},
                features={"test": features[epoch]},
                predictions={"test": predicted},
                classifier=(AXES * (epoch + 1), ZERO_BIAS),
            )
    if version is not None:
        with h5py.File(path, "r+") as handle:
            handle.attrs["schema_version"] = version
    return features


def test_flips_between_the_peak_and_the_last_epoch(tmp_path: Path) -> None:
    features = planted_store(tmp_path / "run.h5")
    frame = flips(tmp_path)
    assert (frame["epoch_a"].unique().tolist(), frame["epoch_b"].unique().tolist()) == ([1], [2])
    lost = frame[frame["change"] == "lost"]
    gained = frame[frame["change"] == "gained"]
    assert lost["sample"].tolist() == [1, 4, 5] and gained["sample"].tolist() == [7]
    assert lost["index"].tolist() == [101, 104, 105]
    assert lost["prediction_b"].tolist() == [2, 3, 3]
    assert (lost["prediction_a"] == lost["label"]).all()
    # At the peak the features sit 2 along their class's axis and 0.1 along the next one,
    # and the classifier's weights are the axes times 2: z_y = 4, the runner-up 2 * 0.1.
    assert lost["logit_margin_a"].tolist() == pytest.approx([2 * (2 - 0.1)] * 3)
    assert (lost["logit_margin_b"] < 0).all() and (gained["logit_margin_b"] > 0).all()
    assert lost["norm_a"].tolist() == pytest.approx([math.hypot(2, 0.1)] * 3)
    expected = np.linalg.norm(features[2, [1, 4, 5]] - features[1, [1, 4, 5]], axis=1)
    assert lost["displacement"].to_numpy() == pytest.approx(expected)
    # Epoch numbers pick any two epochs.
    assert flips(tmp_path, 0, 1)["sample"].tolist() == [1, 3, 5]


def test_margins_agree_with_the_stored_predictions(tmp_path: Path) -> None:
    planted_store(tmp_path / "run.h5")
    frame = margins(tmp_path, "peak")
    assert frame["epoch"].unique().tolist() == [1]
    assert frame["correct"].tolist() == (PLANTED_PREDICTIONS[1] == TEST_LABELS).tolist()
    assert ((frame["logit_margin"] > 0) == frame["correct"]).all()
    assert ((frame["boundary_distance"] > 0) == frame["correct"]).all()
    assert frame["center_distance"].isna().all()  # no centers in this store


def test_the_cache_holds_accuracy_and_margins_per_class(tmp_path: Path) -> None:
    planted_store(tmp_path / "run.h5")
    frame = load_metrics(tmp_path)
    last = frame[(frame["epoch"] == 2) & (frame["split"] == "test")]
    accuracy = last[last["metric"] == "accuracy"].set_index("class")["value"]
    assert accuracy[""] == pytest.approx(5 / 8)
    assert accuracy[["a", "b", "c", "d"]].tolist() == [0.5, 1.0, 0.0, 1.0]
    margin = last[last["metric"] == "logit_margin"].set_index("class")["value"]
    expected = margins(tmp_path, 2)["logit_margin"]
    assert margin[""] == pytest.approx(float(np.median(expected)))


def test_a_version_1_store_is_read_without_margins(tmp_path: Path) -> None:
    planted_store(tmp_path / "run.h5", with_classifier=False, version=1)
    with RunStore(tmp_path) as store:
        assert store.schema_version == 1 and not store.has_classifier
        assert store.classifier(0) is None
    frame = margins(tmp_path, "last")
    assert frame["logit_margin"].isna().all() and (frame["rival"] == -1).all()
    assert frame["norm"].notna().all()
    assert flips(tmp_path)["sample"].tolist() == [1, 4, 5, 7]
    metrics = load_metrics(tmp_path)
    assert "accuracy" in set(metrics["metric"]) and "logit_margin" not in set(metrics["metric"])


def test_an_epoch_the_store_lacks_is_one_line(tmp_path: Path) -> None:
    planted_store(tmp_path / "run.h5")
    with pytest.raises(CLAnalyzeError, match=r"has no epoch 9 \(it holds 0..2\)"):
        margins(tmp_path, 9)


def test_a_trained_runs_classifier_reproduces_its_predictions(center_run: Path) -> None:
    from cl_analyze.training.checkpoints import load_checkpoint

    with RunStore(center_run) as store:
        weight, bias = store.classifier(-1)
        features, predictions = store.features("test", -1), store.predictions("test", -1)
    model = load_checkpoint(center_run / "last.pt")["model"]
    assert np.array_equal(weight, model["fc2.weight"].numpy())
    assert np.array_equal(bias, model["fc2.bias"].numpy())
    logits = torch.from_numpy(features) @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    assert np.array_equal(logits.argmax(1).numpy(), predictions)


def test_embed_stores_the_checkpoints_classifier(center_run: Path, tmp_path: Path) -> None:
    from cl_analyze.training.checkpoints import load_checkpoint
    from cl_analyze.training.embed import EmbedConfig, embed

    out = embed(EmbedConfig(run=center_run, out=tmp_path / "embedded.h5", device="cpu"))
    model = load_checkpoint(center_run / "last.pt")["model"]
    with RunStore(out) as store:
        weight, bias = store.classifier(0)
    assert np.array_equal(weight, model["fc2.weight"].numpy())
    assert np.array_equal(bias, model["fc2.bias"].numpy())


def test_the_peak_of_a_store_without_accuracy_comes_from_its_predictions(tmp_path: Path) -> None:
    planted_store(tmp_path / "run.h5")
    with h5py.File(tmp_path / "run.h5", "r+") as handle:
        handle["history/test_accuracy"][...] = np.nan
    assert flips(tmp_path)["epoch_a"].unique().tolist() == [1]  # 7 of 8 right at epoch 1

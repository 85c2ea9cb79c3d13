"""The report's "Why accuracy declines after the peak" on a store with planted flips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cl_analyze.report import ReportOptions, build_report
from cl_analyze.store import RunWriter

CLASSES, PER_CLASS = 3, 30
LABELS = np.repeat(np.arange(CLASSES), PER_CLASS)
DIRECTIONS_DEG = np.array([0.0, 120.0, 240.0])
LOST = np.arange(6)  # class 0, near the 60-degree boundary at the peak, across it at the end
GAINED = np.array([30, 31])  # class 1, on class 0's side at the peak, home at the end
EARLY_WRONG = np.arange(60, 70)  # class 2, wrong before the peak
PEAK, LAST = 3, 5


def unit(degrees: np.ndarray | float) -> np.ndarray:
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=-1)


def radius(epoch: int) -> float:
    return 1.0 + epoch


def angles(epoch: int) -> np.ndarray:
    """Each test sample's direction in degrees at an epoch; the classifier's weights point at
    0, 120 and 240 degrees, so the boundaries lie at 60, 180 and 300 degrees."""
    jitter = np.random.default_rng(0).uniform(-20, 20, len(LABELS))
    result = DIRECTIONS_DEG[LABELS] + jitter
    result[LOST] = 50.0 if epoch <= PEAK else 70.0
    result[GAINED] = 55.0 if epoch <= PEAK else 130.0
    if epoch < PEAK:
        result[EARLY_WRONG] = 0.0
    return result


def features(epoch: int) -> np.ndarray:
    return radius(epoch) * unit(angles(epoch))


def predictions(epoch: int) -> np.ndarray:
    # The nearest weight direction: the argmax of the logits of unit weights with no bias.
    return (features(epoch) @ unit(DIRECTIONS_DEG).T).argmax(1)


def write_planted_run(folder: Path, with_classifier: bool = True) -> Path:
    with RunWriter.create(
        folder / "run.h5",
        dataset="toy",
        class_names=[f"c{k}" for k in range(CLASSES)],
        feat_dim=2,
        splits={split: (LABELS, np.arange(len(LABELS))) for split in ("train", "test")},
        history_names=("test_accuracy",),
        with_centers=False,
        with_classifier=with_classifier,
        config={"loss": "softmax", "epochs": LAST},
    ) as writer:
        for epoch in range(LAST + 1):
            predicted = predictions(epoch)
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": float((predicted == LABELS).mean())},
                features={"train": features(epoch), "test": features(epoch)},
                predictions={"train": predicted, "test": predicted},
                classifier=(unit(DIRECTIONS_DEG), np.zeros(CLASSES)),
            )
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decline")
    run = write_planted_run(root / "planted")
    build_report([run], ReportOptions(out=root / "report", animation=False, max_points=50))
    return root / "report"


def test_the_planted_flips_are_counted_and_named(report: Path) -> None:
    assert (predictions(PEAK) == LABELS).sum() == 88 and (predictions(LAST) == LABELS).sum() == 84
    text = (report / "report.md").read_text().replace("\\", "")
    section = text.split("## Why accuracy declines after the peak")[1].split("\n## ")[0]
    assert "6 test samples of 90 went from right to wrong and 2 from wrong to right" in section
    assert "(net -4; test accuracy 97.78% -> 93.33%)" in section
    assert "c0 (6 lost, 0 gained; 100.00% -> 80.00%)" in section
    assert "read as: c0 -> c1 (6)" in section
    assert "| c0 | 30 | 6 | 0 | -6 | 100.00% | 80.00% |" in section
    assert "| c1 | 30 | 0 | 2 | +2 | 93.33% | 100.00% |" in section
    assert "| c2 | 30 | 0 | 0 | 0 | 100.00% | 100.00% |" in section
    # At the peak the lost samples sit 10 degrees from the 60-degree boundary at radius 4.
    assert "already sat near a boundary: 6 of 6 (100%)" in section
    edge = f"{4 * math.sin(math.radians(10)):.3g}"
    assert f"median distance to their class's region edge {edge} against" in section
    norm = f"{radius(PEAK):.3g} to {radius(LAST):.3g}"
    assert f"The mean test feature norm rises from {norm} (+50%)." in section
    assert "stayed within one test sample: 0.00 points at the peak, 0.00 at the end" in section


def test_summary_json_holds_the_sections_numbers(report: Path) -> None:
    import json

    summary = json.loads((report / "summary.json").read_text())
    explained = summary["runs"][0]["decline_explained"]
    assert (explained["epoch_a"], explained["epoch_b"]) == (PEAK, LAST)
    assert (explained["lost"], explained["gained"], explained["lost_near_boundary"]) == (6, 2, 6)
    assert explained["confusions"] == [{"true": "c0", "predicted": "c1", "lost": 6}]
    assert explained["lost_boundary_distance_at_a"] == pytest.approx(
        radius(PEAK) * math.sin(math.radians(10))
    )
    assert explained["feature_norm_b"] == pytest.approx(radius(LAST))


def test_the_section_has_its_figures(report: Path) -> None:
    figures = report / "figures"
    for name in ("class_accuracy", "margins_0", "flips_0"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name
        # Like every report figure, a vector PDF beside the PNG (issue 14).
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    text = (report / "report.md").read_text()
    assert "figures/flips_0.png" in text and "figures/class_accuracy.png" in text


def test_images_of_a_dataset_that_is_not_here_are_left_out_with_why(report: Path) -> None:
    text = (report / "report.md").read_text().replace("\\", "")
    assert "Lost test images of planted: the toy images cannot be read here" in text


def test_the_most_flipped_lost_images_come_from_the_dataset() -> None:
    from dataclasses import replace

    from cl_analyze.data import load_dataset
    from cl_analyze.metrics.decline_dynamics import DeclineDynamics
    from cl_analyze.report.decline import lost_thumbnails

    split = load_dataset("mnist-5k", download=False, limit_test=50).test
    labels = split.labels.numpy()
    n = len(labels)
    lost = np.zeros(n, dtype=bool)
    lost[[5, 17, 30]] = True
    counts = np.zeros(n, dtype=np.int64)
    counts[[5, 17, 30]] = [1, 3, 1]
    wrong = (labels + 1) % 10
    base = DeclineDynamics(
        *("run", 3, 9, n, 3, 0, [], [], True, 1.0, 1.0),
        *(None, None, None, None, None, None, None),
    )
    d = replace(
        base,
        class_names=[str(k) for k in range(10)],
        labels=labels,
        lost_mask=lost,
        predictions_a=labels,
        predictions_b=wrong,
        indices=split.indices.numpy(),
        flip_counts=counts,
    )
    found = lost_thumbnails("mnist-5k", "data", d, limit=2)
    assert not isinstance(found, str)
    images, titles = found
    # Sample 17 flipped most often; of the two flipped once, the earlier one.
    assert np.array_equal(images, split.images.numpy()[[17, 5]])
    assert titles[0] == f"{labels[17]}: {labels[17]}->{wrong[17]} (3x)"
    # Stored indices that the dataset does not hold: said, not drawn.
    moved = replace(d, indices=d.indices + 10**6)
    assert "differs from the one the run stored" in str(lost_thumbnails("mnist-5k", "data", moved))


def test_a_version_1_store_gets_the_flips_without_the_margins(tmp_path: Path) -> None:
    import h5py

    run = write_planted_run(tmp_path / "old", with_classifier=False)
    with h5py.File(run / "run.h5", "r+") as handle:
        handle.attrs["schema_version"] = 1
    build_report([run], ReportOptions(out=tmp_path / "report", figures=False))
    text = (tmp_path / "report" / "report.md").read_text().replace("\\", "")
    assert "6 test samples of 90 went from right to wrong and 2 from wrong to right" in text
    assert "holds no classifier (a version-1 store" in text
    assert "already sat near" not in text and "no nearer a boundary" not in text

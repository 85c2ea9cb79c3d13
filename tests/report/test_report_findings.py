"""The report's findings a reviewer checks: one snapshot of a live run, degenerate runs warned
about and left out, seeds pooled with intervals and a band. Stores written with RunWriter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from cl_analyze.report import ReportOptions, build_report
from cl_analyze.store import RunStore, RunWriter, run_lock

CLASSES = 3
PER_CLASS = 20
HISTORY = ("test_accuracy", "train_loss_ce", "test_loss_ce", "lr")


def features_at(epoch: int, labels: np.ndarray, scale: float, rng: np.random.Generator) -> Any:
    angles = 2 * np.pi * np.arange(CLASSES) / CLASSES
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    radius = scale * (1.0 + 0.2 * epoch)
    return radius * directions[labels] + 0.2 * scale * rng.standard_normal((len(labels), 2))


def write_store(
    run_dir: Path,
    accuracy: np.ndarray,
    *,
    loss: str = "center",
    seed: int = 1,
    train_loss: np.ndarray | None = None,
    scales: np.ndarray | None = None,
) -> Path:
    """A store with the given test accuracy per epoch (epochs 0..len-1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    epochs = len(accuracy)
    losses = np.r_[np.nan, np.linspace(1.0, 0.1, epochs - 1)] if train_loss is None else train_loss
    scales = np.ones(epochs) if scales is None else scales
    with RunWriter.create(
        run_dir / "run.h5",
        dataset="mnist-5k",
        class_names=[f"digit {c}" for c in range(CLASSES)],
        feat_dim=2,
        splits={split: (labels, np.arange(len(labels))) for split in ("train", "test")},
        history_names=HISTORY,
        with_centers=loss == "center",
        config={"loss": loss, "dataset": "mnist-5k", "epochs": epochs - 1, "seed": seed},
    ) as writer:
        for epoch in range(epochs):
            features = features_at(epoch, labels, float(scales[epoch]), rng)
            writer.append_epoch(
                epoch,
                scalars={
                    "test_accuracy": float(accuracy[epoch]),
                    "train_loss_ce": float(losses[epoch]),
                    "test_loss_ce": 0.5,
                    "lr": 0.01,
                },
                features={"train": features, "test": features},
                predictions={"train": labels, "test": labels},
                centers=features[::PER_CLASS] if loss == "center" else None,
            )
    return run_dir


def rising(epochs: int, top: float = 0.95) -> np.ndarray:
    return np.minimum(0.3 + (top - 0.3) * np.arange(epochs) / 5, top)


def test_a_live_run_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch 5 lands after the report read the history: no table, figure or frame shows it."""
    import cl_analyze.metrics.cache as cache
    import cl_analyze.viz as viz

    run = write_store(tmp_path / "live", rising(5))  # epochs 0..4
    original_metrics, original_load = cache.load_metrics, viz.load_plot_run
    loaded: list[Any] = []

    with run_lock(run, "train"), RunWriter.resume(run / "run.h5", keep_rows=5) as writer:

        def metrics_after_a_new_epoch(*args: Any, **kwargs: Any) -> pd.DataFrame:
            if writer.rows == 5:  # the trainer finishes epoch 5 between the reads
                labels = np.repeat(np.arange(CLASSES), PER_CLASS)
                features = features_at(5, labels, 1.0, np.random.default_rng(9))
                writer.append_epoch(
                    5,
                    scalars={"test_accuracy": 0.2, "lr": 0.01},
                    features={"train": features, "test": features},
                    predictions={"train": labels, "test": labels},
                    centers=features[::PER_CLASS],
                )
            return original_metrics(*args, **kwargs)

        def load_and_keep(*args: Any, **kwargs: Any) -> Any:
            loaded.append(original_load(*args, **kwargs))
            return loaded[-1]

        monkeypatch.setattr(cache, "load_metrics", metrics_after_a_new_epoch)
        monkeypatch.setattr(viz, "load_plot_run", load_and_keep)
        out = tmp_path / "report"
        build_report([run], ReportOptions(out=out, max_points=15))
        with RunStore(run) as store:
            assert store.rows == 6  # the store did grow meanwhile

    summary = json.loads((out / "summary.json").read_text())["runs"][0]
    assert (summary["final_epoch"], summary["epochs_read"], summary["training"]) == (4, 5, True)
    frame = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert frame["epoch"].max() == 4
    assert set(frame[frame["split"] == "test"]["epoch"]) == {0, 1, 2, 3, 4}
    (plot_run,) = loaded
    assert plot_run.epochs.tolist() == [0, 1, 2, 3, 4]
    assert "last (epoch 4)" in " ".join(plot_run.distances) or "peak = last (epoch 4)" in " ".join(
        plot_run.distances
    )
    with Image.open(out / "figures" / "animation.gif") as gif:
        assert gif.n_frames == 5
    assert "reported up to its last completed epoch, 4" in (out / "index.html").read_text()


def test_a_run_shorter_than_its_snapshot_is_an_error(tmp_path: Path) -> None:
    from cl_analyze.errors import CLAnalyzeError

    run = write_store(tmp_path / "run", rising(3))
    with pytest.raises(CLAnalyzeError, match="fewer than the 5 read earlier"):
        RunStore(run, rows=5)
    with RunStore(run, rows=2) as store:
        assert store.epochs.tolist() == [0, 1] and store.history["test_accuracy"].shape == (2,)


@pytest.fixture(scope="module")
def degenerate_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("degenerate")
    epochs = 12
    good = write_store(root / "good", rising(epochs))
    other = write_store(root / "other", rising(epochs, top=0.9), loss="softmax")
    # Chance for 3 classes is 33.3%; two standard errors on 60 samples are 12.2 points.
    stuck = write_store(root / "stuck", np.full(epochs, 0.35), seed=2)
    losses = np.r_[np.nan, np.linspace(1.0, 0.5, 5), np.full(epochs - 6, np.nan)]
    diverged = write_store(root / "diverged", rising(epochs), train_loss=losses, seed=3)
    scales = np.r_[np.ones(epochs - 1), 1e-4]
    collapsed = write_store(root / "collapsed", rising(epochs), scales=scales, seed=4)
    out = root / "report"
    build_report([good, other, stuck, diverged, collapsed], ReportOptions(out=out, figures=False))
    return out


def test_degenerate_runs_are_warned_about_at_the_top(degenerate_report: Path) -> None:
    page = (degenerate_report / "index.html").read_text()
    top = page[: page.index('id="findings"')]
    assert "Warning: stuck is at chance level: its best test accuracy, 35.00%" in top
    assert "diverged diverged: its train_loss_ce is NaN from epoch 6 on" in top
    assert "collapsed&#x27;s features collapsed: at its last epoch, 11" in top
    assert "good" not in top.split("Warning")[-1].split("</p>")[0]
    summary = json.loads((degenerate_report / "summary.json").read_text())
    kinds = {(w["run"], w["kind"]) for w in summary["warnings"]}
    assert kinds == {
        ("stuck", "chance level"),
        ("diverged", "non-finite loss"),
        ("collapsed", "collapsed features"),
    }
    by_name = {run["name"]: run for run in summary["runs"]}
    assert by_name["good"]["warnings"] == [] and by_name["stuck"]["warnings"]


def test_degenerate_runs_are_left_out_of_comparisons(degenerate_report: Path) -> None:
    page = (degenerate_report / "index.html").read_text()
    comparison = page[page.index('id="comparison"') :].split("Definitions")[0]
    assert "Peak test accuracy: good 95.00% at epoch 5, other 90.00% at epoch 5" in comparison
    for name in ("stuck", "diverged", "collapsed"):
        assert f"{name} " not in comparison.split("Left out")[0]
    assert "Left out of the comparison (see the warnings above): stuck, diverged, collapsed" in (
        comparison
    )


SEEDS = (1, 2, 3)


def seeded_accuracy(loss: str, seed: int, epochs: int = 30) -> np.ndarray:
    """Center loss peaks higher than softmax; each seed shifts its curve a little."""
    rng = np.random.default_rng(100 * seed + len(loss))
    top = 0.96 if loss == "center" else 0.90
    return rising(epochs, top) + 0.005 * rng.standard_normal(epochs)


@pytest.fixture(scope="module")
def seeds_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeds")
    runs = [
        write_store(root / f"{loss}-{seed}", seeded_accuracy(loss, seed), loss=loss, seed=seed)
        for loss in ("softmax", "center")
        for seed in SEEDS
    ]
    out = root / "report"
    build_report(runs, ReportOptions(out=out, animation=False, max_points=15))
    return out


def t_interval(values: list[float]) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def test_seeds_are_pooled_with_intervals(seeds_report: Path) -> None:
    summary = json.loads((seeds_report / "summary.json").read_text())
    groups = {group["label"]: group for group in summary["seed_groups"]}
    assert set(groups) == {"loss=softmax", "loss=center"}
    for loss in ("softmax", "center"):
        group = groups[f"loss={loss}"]
        assert group["seeds"] == list(SEEDS)
        curves = [seeded_accuracy(loss, seed) for seed in SEEDS]
        peaks = [float(curve.max()) for curve in curves]
        mean, low, high = t_interval(peaks)
        assert group["peak_accuracy"]["mean"] == pytest.approx(mean)
        assert group["peak_accuracy"]["low"] == pytest.approx(low)
        assert group["peak_accuracy"]["high"] == pytest.approx(high)
        peak_epochs = [float(curve.argmax()) for curve in curves]
        assert group["peak_epoch"]["mean"] == pytest.approx(np.mean(peak_epochs))
        pooled = group["pooled_curve"]
        mean_curve = np.mean(curves, axis=0)
        assert pooled["peak_accuracy"] == pytest.approx(mean_curve.max())
        assert pooled["resolution"] == pytest.approx(1 / (len(SEEDS) * CLASSES * PER_CLASS))
    differences = [d for d in summary["seed_differences"] if d["quantity"] == "peak_accuracy"]
    assert len(differences) == 1 and differences[0]["beyond_spread"] is True
    softmax = [float(seeded_accuracy("softmax", s).max()) for s in SEEDS]
    center = [float(seeded_accuracy("center", s).max()) for s in SEEDS]
    welch = stats.ttest_ind(softmax, center, equal_var=False).confidence_interval()
    assert differences[0]["low"] == pytest.approx(welch.low)
    assert differences[0]["high"] == pytest.approx(welch.high)


def test_seeds_page_shows_the_band_and_the_comparison(seeds_report: Path) -> None:
    page = (seeds_report / "index.html").read_text()
    assert 'id="seeds-pooled"' in page and "figures/accuracy_seeds.png" in page
    assert (seeds_report / "figures" / "accuracy_seeds.png").is_file()
    assert "Peak test accuracy: loss=softmax" in page
    assert "is larger than the seed-to-seed spread" in page
    assert "-0.00" not in page and "-0.00" not in (seeds_report / "report.md").read_text()


def test_a_run_given_twice_is_not_a_second_seed(seeds_report: Path) -> None:
    root = seeds_report.parent
    out = root / "twice"
    build_report(
        [root / "center-1", root / "center-1", root / "center-2"],
        ReportOptions(out=out, figures=False),
    )
    (group,) = json.loads((out / "summary.json").read_text())["seed_groups"]
    assert group["seeds"] == [1, 2]
    (left_out,) = group["left_out"]
    assert left_out.endswith(f"(the same seed as {group['runs'][0]})")

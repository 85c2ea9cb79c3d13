"""`cl-analyze report SWEEP`: a fake sweep folder of tiny stores written through RunWriter."""

from __future__ import annotations

import html.parser
import json
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.report import ReportOptions, build_report
from cl_analyze.report.sweep import grouped, peak_spread_table
from cl_analyze.store import RunWriter
from cl_analyze.sweep.grid import combination_name
from cl_analyze.sweep.state import SWEEP_FORMAT, SWEEP_VERSION

LAMBDAS = (0.01, 0.1, 1.0)
SEEDS = (1, 2)
EPOCHS = 6
CLASSES = 3


def planted_accuracy(center_weight: float, seed: int) -> np.ndarray:
    """Peaks at epoch 2 + seed, at a height that grows with lambda, then declines."""
    epoch = np.arange(EPOCHS + 1)
    peak = 2 + seed
    top = 0.95 + 0.01 * np.log10(center_weight) + 0.001 * seed
    return np.where(epoch <= peak, 0.2 + (top - 0.2) * epoch / peak, top - 0.004 * (epoch - peak))


def write_run(folder: Path, center_weight: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), 10)
    angles = 2 * np.pi * np.arange(CLASSES) / CLASSES
    means = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 3
    accuracy = planted_accuracy(center_weight, seed)
    with RunWriter.create(
        folder / "run.h5",
        dataset="mnist-5k",
        class_names=[str(c) for c in range(CLASSES)],
        feat_dim=2,
        splits={"test": (labels, np.arange(len(labels)))},
        history_names=("test_accuracy",),
        with_centers=True,
        config={"loss": "center", "center_weight": center_weight, "seed": seed},
    ) as writer:
        for epoch in range(EPOCHS + 1):
            spread = 1.0 / (1.0 + 10 * center_weight * epoch)  # larger lambda: tighter classes
            features = means[labels] + spread * rng.standard_normal((len(labels), 2))
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": accuracy[epoch]},
                features={"test": features},
                predictions={"test": labels},
                centers=means,
            )


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts") / "sweep1"
    root.mkdir()
    runs = []
    for center_weight in LAMBDAS:
        for seed in SEEDS:
            values = {"center_weight": center_weight, "seed": seed}
            name = combination_name(values)
            write_run(root / name, center_weight, seed)
            runs.append(
                {
                    "name": name,
                    "folder": name,
                    "values": values,
                    "state": "done",
                    "action": "train",
                    "error": None,
                    "device": "cpu",
                    "log": None,
                }
            )
    # A run that never started: listed in sweep.json, no folder.
    runs.append(
        {
            "name": "center-weight=10_seed=1",
            "folder": "center-weight=10_seed=1",
            "values": {"center_weight": 10.0, "seed": 1},
            "state": "failed",
            "action": "train",
            "error": "boom",
            "device": "cpu",
            "log": None,
        }
    )
    document = {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "updated": "2026-01-01T00:00:00+0000",
        "backend": "local",
        "grid": {"center_weight": [*LAMBDAS, 10.0], "seed": list(SEEDS)},
        "fixed": {"dataset": "mnist-5k", "epochs": EPOCHS},
        "runs": runs,
    }
    (root / "sweep.json").write_text(json.dumps(document))
    return root


@pytest.fixture(scope="module")
def sweep_report(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "sweep"
    build_report([sweep_dir], ReportOptions(out=out, animation=False, max_points=30))
    return out


def test_summary_holds_every_run_with_its_planted_peak(sweep_report: Path) -> None:
    summary = json.loads((sweep_report / "summary.json").read_text())
    assert len(summary["runs"]) == len(LAMBDAS) * len(SEEDS)
    for run in summary["runs"]:
        center_weight = float(run["name"].split("_")[0].split("=")[1])
        seed = int(run["name"].split("=")[-1])
        accuracy = planted_accuracy(center_weight, seed)
        assert run["peak_epoch"] == 2 + seed
        assert run["peak_accuracy"] == pytest.approx(accuracy.max())
        tail = accuracy[2 + seed + 1 :][-5:]
        assert run["decline"] == pytest.approx(accuracy.max() - tail.mean())


def test_page_has_the_sweep_figures_and_the_missing_run_note(sweep_report: Path) -> None:
    page = (sweep_report / "index.html").read_text()
    for figure in ("sweep_accuracy.png", "sweep_scatter.png", "accuracy.png"):
        assert (sweep_report / "figures" / figure).is_file()
        assert f"figures/{figure}" in page
    assert "center-weight=10_seed=1: failed, no store yet" in page

    class Sources(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [v for k, v in attrs if k in ("src", "href") and v]

    parser = Sources()
    parser.feed(page)
    for source in parser.found:
        assert (sweep_report / urllib.parse.unquote(source)).is_file()
    # The best lambda by mean last-epoch accuracy, computed here from the planted curves.
    finals = {lam: np.mean([planted_accuracy(lam, s)[-1] for s in SEEDS]) for lam in LAMBDAS}
    best = max(finals, key=lambda lam: finals[lam])
    assert f"highest at {best}" in page


def test_peak_epoch_spread_over_seeds(sweep_report: Path, sweep_dir: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "center_weight": [lam for lam in LAMBDAS for _ in SEEDS],
            "seed": [s for _ in LAMBDAS for s in SEEDS],
            "peak_epoch": [2 + s for _ in LAMBDAS for s in SEEDS],
            "final_accuracy": [planted_accuracy(lam, s)[-1] for lam in LAMBDAS for s in SEEDS],
        }
    )
    columns, rows = peak_spread_table(frame, ["center_weight", "seed"])
    assert columns[:3] == ("center_weight", "runs", "peak epochs")
    expected_std = np.std([2 + s for s in SEEDS], ddof=1)
    assert rows[0][1:6] == ("2", "3, 4", "3.5", f"{expected_std:.1f}", "3..4")
    stats = grouped(frame, "center_weight", "final_accuracy")
    for _, row in stats.iterrows():
        values = [planted_accuracy(row["center_weight"], s)[-1] for s in SEEDS]
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))


def test_the_report_knows_the_sweep_file_name() -> None:
    from cl_analyze.report import build
    from cl_analyze.sweep import state

    assert build.SWEEP_JSON == state.SWEEP_JSON


def test_a_sweep_is_reported_alone(sweep_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CLAnalyzeError, match="report a sweep on its own"):
        build_report(
            [sweep_dir, sweep_dir / combination_name({"center_weight": 0.01, "seed": 1})],
            ReportOptions(out=tmp_path / "r"),
        )


def test_the_seeds_of_each_lambda_are_pooled(sweep_report: Path) -> None:
    import math

    from scipy import stats

    summary = json.loads((sweep_report / "summary.json").read_text())
    groups = {group["label"]: group for group in summary["seed_groups"]}
    assert set(groups) == {f"center_weight={lam}" for lam in LAMBDAS}
    for lam in LAMBDAS:
        group = groups[f"center_weight={lam}"]
        assert group["seeds"] == list(SEEDS)
        peaks = [float(planted_accuracy(lam, seed).max()) for seed in SEEDS]
        half = stats.t.ppf(0.975, len(SEEDS) - 1) * np.std(peaks, ddof=1) / math.sqrt(len(SEEDS))
        assert group["peak_accuracy"]["mean"] == pytest.approx(np.mean(peaks))
        assert group["peak_accuracy"]["high"] == pytest.approx(np.mean(peaks) + half)
    page = (sweep_report / "index.html").read_text()
    assert 'id="seeds-pooled"' in page and "figures/accuracy_seeds.png" in page
    assert "seed-to-seed spread" in page

"""The report's words and tables, checked against numbers computed here from the planted
features (numpy, scikit-learn): the findings' geometry and centers sentences, the comparison of
two runs, the metrics table, the "Left out" section, and an --out that would hit a run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import silhouette_score
from typer.testing import CliRunner

from cl_analyze.cli import app
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.report import ReportOptions, build_report
from cl_analyze.store import RunWriter

CLASSES = 3
PER_CLASS = 20
LABELS = np.repeat(np.arange(CLASSES), PER_CLASS)
ANGLES = 2 * np.pi * np.arange(CLASSES) / CLASSES
DIRECTIONS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
NOISE = np.random.default_rng(7).standard_normal((len(LABELS), 2))
ACCURACY = {  # center peaks at epoch 3, softmax at epoch 2
    "center": [0.50, 0.70, 0.90, 0.95, 0.93, 0.92],
    "softmax": [0.40, 0.60, 0.93, 0.91, 0.90, 0.89],
}
SPREAD = {"center": 0.2, "softmax": 0.6}
PEAK = {"center": 3, "softmax": 2}
LAST = 5


def radius(epoch: int) -> float:
    return 1.0 + 0.5 * epoch


def features(loss: str, epoch: int) -> np.ndarray:
    """Classes at 120 degrees, moving out with the epoch; a fixed noise scaled per run."""
    return radius(epoch) * DIRECTIONS[LABELS] + SPREAD[loss] * NOISE


def write_run(folder: Path, loss: str, poison_epoch: int | None = None) -> Path:
    with RunWriter.create(
        folder / "run.h5",
        dataset="mnist-5k",
        class_names=[f"c{k}" for k in range(CLASSES)],
        feat_dim=2,
        splits={split: (LABELS, np.arange(len(LABELS))) for split in ("train", "test")},
        history_names=("test_accuracy", "lr"),
        with_centers=loss == "center",
        config={"loss": loss, "dataset": "mnist-5k", "epochs": LAST},
    ) as writer:
        for epoch, accuracy in enumerate(ACCURACY[loss]):
            points = features(loss, epoch)
            if epoch == poison_epoch:
                points = points.copy()
                points[0, 0] = np.inf
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": accuracy, "lr": 0.01},
                features={"train": points, "test": points},
                predictions={"train": LABELS, "test": LABELS},
                centers=radius(epoch) * DIRECTIONS if loss == "center" else None,
            )
    return folder


def geometry(points: np.ndarray) -> dict[str, float]:
    """The whole-split metrics of docs/metrics.md, written out with numpy and scikit-learn."""
    means = np.stack([points[k == LABELS].mean(axis=0) for k in range(CLASSES)])
    distances = np.linalg.norm(points - means[LABELS], axis=1)
    intra = [distances[k == LABELS].mean() for k in range(CLASSES)]  # equal class sizes
    intra_rms = [np.sqrt((distances[k == LABELS] ** 2).mean()) for k in range(CLASSES)]
    between = [
        np.linalg.norm(means[i] - means[j]) for i in range(CLASSES) for j in range(i + 1, CLASSES)
    ]
    return {
        "intra_mean": float(np.mean(intra)),
        "inter_min": float(min(between)),
        "inter_intra_ratio": float(min(between) / max(intra_rms)),
        "silhouette": float(silhouette_score(points, LABELS)),
        "feature_norm": float(np.linalg.norm(points, axis=1).mean()),
    }


def number(value: float) -> str:
    return f"{value:.3g}"


def change(words: str, before: float, after: float) -> str:
    """The report's wording of a change (docs/report.md): 'stays near' within 2%."""
    if abs(after - before) <= 0.02 * max(abs(before), abs(after)):
        return f"{words} stays near {number(after)}"
    verb = "rises" if after > before else "falls"
    relative = (after - before) / abs(before)
    return f"{words} {verb} from {number(before)} to {number(after)} ({relative:+.0%})"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text")
    runs = [write_run(root / "center", "center"), write_run(root / "softmax", "softmax")]
    build_report(runs, ReportOptions(out=root / "report", figures=False))
    return root / "report"


def paragraphs(report: Path) -> list[str]:
    return [line for line in (report / "report.md").read_text().splitlines() if line]


def test_geometry_and_centers_sentences_state_the_numbers(report: Path) -> None:
    text = " ".join(paragraphs(report)).replace("\\", "")  # Markdown escapes
    peak, last = geometry(features("center", 3)), geometry(features("center", LAST))
    words = {
        "intra_mean": "the mean intra-class distance",
        "inter_min": "the smallest distance between class means",
        "inter_intra_ratio": "the inter/intra ratio",
        "silhouette": "the silhouette",
        "feature_norm": "the mean feature norm",
    }
    changes = [change(words[name], peak[name], last[name]) for name in words]
    # The learned centers sit at radius(e) on three directions 120 degrees apart.
    changes.append(change("the mean center norm", radius(3), radius(LAST)))
    changes.append(
        change("the smallest center-to-center distance", radius(3) * 3**0.5, radius(LAST) * 3**0.5)
    )
    assert changes[0] == f"the mean intra-class distance stays near {number(last['intra_mean'])}"
    assert changes[-2] == "the mean center norm rises from 2.5 to 3.5 (+40%)"
    expected = (
        f"Over the same epochs (3 to {LAST}), on the test split, "
        + ", ".join(changes[:-1])
        + " and "
        + changes[-1]
        + "."
    )
    assert expected in text
    # The softmax run has no centers: its sentence stops at the feature norm.
    soft_peak, soft_last = geometry(features("softmax", 2)), geometry(features("softmax", LAST))
    soft = [change(words[name], soft_peak[name], soft_last[name]) for name in words]
    assert (
        f"Over the same epochs (2 to {LAST}), on the test split, "
        + ", ".join(soft[:-1])
        + " and "
        + soft[-1]
        + "."
    ) in text


def test_the_comparison_of_two_runs(report: Path) -> None:
    text = "\n".join(paragraphs(report)).replace("\\", "")
    assert "### Comparison" in text
    assert (
        "Peak test accuracy: center 95.00% at epoch 3, softmax 93.00% at epoch 2;"
        " the highest is center."
    ) in text
    # Decline: the peak minus the mean of the (at most 5) epochs after it, in points.
    center_decline = 100 * (0.95 - np.mean(ACCURACY["center"][4:]))
    softmax_decline = 100 * (0.93 - np.mean(ACCURACY["softmax"][3:]))
    assert (
        f"Decline after the peak (points): center {center_decline:.2f},"
        f" softmax {softmax_decline:.2f}."
    ) in text
    for moment, label, epochs in (
        ("peak", "At each run's peak", PEAK),
        ("last", "At the last epoch", {"center": LAST, "softmax": LAST}),
    ):
        center = geometry(features("center", epochs["center"]))
        softmax = geometry(features("softmax", epochs["softmax"]))
        # The center run's tighter clusters win all three comparisons (checked here first).
        assert center["intra_mean"] < softmax["intra_mean"]
        assert center["inter_intra_ratio"] > softmax["inter_intra_ratio"]
        assert center["silhouette"] > softmax["silhouette"]
        expected = (
            f"{label}, center is more compact (mean intra-class distance"
            f" {number(center['intra_mean'])} vs softmax {number(softmax['intra_mean'])}),"
            " center is more separated relative to its spread (inter/intra ratio"
            f" {number(center['inter_intra_ratio'])} vs softmax"
            f" {number(softmax['inter_intra_ratio'])}), center is better clustered (silhouette"
            f" {number(center['silhouette'])} vs softmax {number(softmax['silhouette'])})."
        )
        assert expected in text, moment


def table_rows(markdown: str, section: str, heading: str) -> list[list[str]]:
    """The rows of the first table after ``heading`` in ``section`` (cells unescaped)."""
    lines = markdown.splitlines()
    start = lines.index(heading, lines.index(section))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            cells = [cell.strip().replace("\\", "") for cell in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows


def test_the_metrics_table_shows_peak_last_and_change(report: Path) -> None:
    markdown = (report / "report.md").read_text()
    assert "## Metrics at the peak and at the last epoch" in markdown
    rows = table_rows(markdown, "## Metrics at the peak and at the last epoch", "### center")
    header, body = rows[0], {(row[0], row[1]): row[2:] for row in rows[1:]}
    assert header == ["split", "metric", "peak (epoch 3)", f"last (epoch {LAST})", "change"]
    assert body[("test", "center_norm")] == ["2.5", "3.5", "+40.0%"]
    peak, last = geometry(features("center", 3)), geometry(features("center", LAST))
    for name in ("inter_min", "silhouette", "feature_norm"):
        before, after = peak[name], last[name]
        assert body[("test", name)] == [
            f"{before:.4g}",
            f"{after:.4g}",
            f"{(after - before) / abs(before):+.1%}",
        ]
    assert {split for split, _ in body} == {"test", "train"}


def test_left_out_says_what_is_missing_and_why(tmp_path: Path) -> None:
    good = write_run(tmp_path / "center", "center")
    broken = write_run(tmp_path / "broken", "center", poison_epoch=4)  # a diverged epoch
    build_report([good, broken], ReportOptions(out=tmp_path / "report", figures=False))
    markdown = (tmp_path / "report" / "report.md").read_text().replace("\\", "")
    left_out = markdown[markdown.index("## Left out") :]
    assert "Figures and animation: skipped (--no-figures)." in left_out
    match = re.search(r"Metrics of broken: (.*)\.", left_out)
    assert match is not None and "epoch 4 split" in match.group(1)
    assert "Metrics of center" not in left_out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert any(reason.startswith("Metrics of broken:") for reason in summary["omitted"])
    # The report went on: the broken run's findings are there, without metric sentences.
    assert "### broken" in markdown


def test_out_never_points_at_a_run_folder(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "center", "center")
    before = sorted(p.name for p in run.iterdir())
    for out in (run, run.parent):  # the run itself, or a folder holding it
        result = CliRunner().invoke(app, ["report", str(run), "--out", str(out), "--no-figures"])
        assert isinstance(result.exception, CLAnalyzeError), result.output
        assert "would overwrite a run folder" in str(result.exception)
    assert sorted(p.name for p in run.iterdir()) == before


def test_the_metrics_table_shows_the_metric_learning_numbers(report: Path) -> None:
    from scipy.spatial.distance import cdist
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    markdown = (report / "report.md").read_text()
    rows = table_rows(markdown, "## Metrics at the peak and at the last epoch", "### center")
    body = {(row[0], row[1]): row[2:] for row in rows[1:]}
    points = features("center", PEAK["center"])  # train = test here: queries meet themselves
    order = np.argsort(cdist(points, points), axis=1, kind="stable")[:, :PER_CLASS]
    relevant = LABELS[order] == LABELS[:, None]
    precision_at = np.cumsum(relevant, axis=1) / np.arange(1, PER_CLASS + 1)
    expected = {
        "map_at_r": ((precision_at * relevant).sum(1) / PER_CLASS).mean(),
        "r_precision": relevant.mean(),
        "precision_at_1": relevant[:, 0].mean(),
    }
    clusters = KMeans(n_clusters=CLASSES, n_init=1, random_state=0).fit_predict(points)
    expected["nmi"] = normalized_mutual_info_score(LABELS, clusters)
    expected["ami"] = adjusted_mutual_info_score(LABELS, clusters)
    for name, value in expected.items():
        assert body[("test", name)][0] == f"{value:.4g}", name
        assert ("train", name) not in body  # queries are the test split only

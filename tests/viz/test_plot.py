"""cl-analyze plot: static figures, their data (projection, sampling, limits) and error paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from PIL import Image
from sklearn.decomposition import PCA
from typer.testing import CliRunner

from cl_analyze.cli import app
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, RunWriter
from cl_analyze.viz import (
    PlotOptions,
    accuracy_figure,
    centers_figure,
    distance_heatmap_figure,
    load_plot_run,
    loss_figure,
    metric_figure,
    plot_runs,
    scatter_figure,
)
from cl_analyze.viz.curves import lr_steps
from cl_analyze.viz.plot import parse_epochs
from cl_analyze.viz.runs import fit_projection, stratified_sample
from cl_analyze.viz.style import class_colors, figure_style, robust_limits

HISTORY = ("lr", "test_accuracy", "train_accuracy_eval", "train_loss_ce", "test_loss_ce")
FeatureFn = Callable[[int, str, np.ndarray], np.ndarray]


def ring_features(epoch: int, split: str, labels: np.ndarray, dim: int = 2) -> np.ndarray:
    """Class c sits on a ring at angle 2 pi c / C, moving outward with the epoch, plus noise."""
    rng = np.random.default_rng(epoch * 7 + len(split))
    classes = labels.max() + 1
    angle = 2 * np.pi * labels / classes
    base = np.stack([np.cos(angle), np.sin(angle)], axis=1) * (1 + epoch)
    noise = rng.normal(scale=0.2, size=(len(labels), max(dim, 2)))
    if dim > 2:
        base = np.concatenate([base, np.zeros((len(labels), dim - 2))], axis=1)
    return (base + noise)[:, :dim].astype(np.float32)


def write_store(
    path: Path,
    *,
    epochs: int = 3,
    per_class: int = 20,
    num_classes: int = 4,
    dim: int = 2,
    splits: tuple[str, ...] = ("train", "test"),
    with_centers: bool = True,
    dataset: str = "synthetic",
    history: dict[str, list[float]] | None = None,
    features: FeatureFn | None = None,
    first_epoch: int = 0,
) -> Path:
    """A small store written with ``RunWriter``, ``epochs`` rows from epoch ``first_epoch``."""
    labels = np.repeat(np.arange(num_classes), per_class)
    features = features or (lambda e, s, y: ring_features(e, s, y, dim))
    writer = RunWriter.create(
        path,
        dataset=dataset,
        class_names=[f"class {c}" for c in range(num_classes)],
        feat_dim=dim,
        splits={s: (labels, np.arange(len(labels))) for s in splits},
        history_names=HISTORY,
        with_centers=with_centers,
    )
    with writer:
        for row in range(epochs):
            epoch = first_epoch + row
            scalars = {name: values[row] for name, values in (history or {}).items()}
            feats = {s: features(epoch, s, labels) for s in splits}
            # The first `row` samples of each class are misclassified: accuracy rises per row.
            wrong = (np.arange(len(labels)) % per_class) < max(per_class // 2 - row, 0)
            predictions = {s: np.where(wrong, (labels + 1) % num_classes, labels) for s in splits}
            centers = None
            if with_centers:
                centers = np.stack(
                    [np.mean(feats[splits[0]][labels == c], axis=0) for c in range(num_classes)]
                )
            writer.append_epoch(
                epoch, scalars=scalars, features=feats, predictions=predictions, centers=centers
            )
    return path


def xy(line: Line2D) -> np.ndarray:
    """(n, 2) float data of a plotted line."""
    return np.asarray(line.get_xydata(), dtype=np.float64)


def invoke(*args: str) -> tuple[int, BaseException | None, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.exception, result.output


# --- sampling, projection, limits --------------------------------------------------------------


def test_stratified_sample_keeps_class_shares_and_is_deterministic() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    chosen = stratified_sample(labels, 10, seed=3)
    assert len(set(chosen.tolist())) == 10
    assert np.bincount(labels[chosen]).tolist() == [5, 3, 2]
    assert np.array_equal(chosen, stratified_sample(labels, 10, seed=3))
    assert sorted(stratified_sample(labels, None).tolist()) == list(range(100))
    # Largest remainders: 7 points of shares 3.5/2.1/1.4 -> 4, 2, 1.
    assert np.bincount(labels[stratified_sample(labels, 7)]).tolist() == [4, 2, 1]


def test_robust_limits_ignore_outliers_but_keep_centers() -> None:
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(0, 100, 10_000), rng.uniform(0, 10, 10_000)], axis=1)
    points[0] = [1e6, -1e6]
    (x0, x1), (y0, y1) = robust_limits(points, pad=0.0)
    assert (x0, x1) == pytest.approx(tuple(np.quantile(points[:, 0], [0.005, 0.995])))
    assert (y0, y1) == pytest.approx(tuple(np.quantile(points[:, 1], [0.005, 0.995])))
    (x0, x1), _ = robust_limits(points, np.array([[500.0, 5.0]]), pad=0.1)
    assert x1 == pytest.approx(500 + 0.1 * (500 - np.quantile(points[:, 0], 0.005)))


def test_pca_projection_matches_scikit_learn_up_to_sign() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 5)) * [5.0, 3.0, 1.0, 0.5, 0.1] + 2.0
    projection = fit_projection(features)
    reference = PCA(n_components=2).fit(features)
    ours = projection(features)
    theirs = features @ reference.components_.T  # linear map, origin kept (no centring)
    for column in range(2):
        sign = np.sign(ours[0, column] * theirs[0, column])
        np.testing.assert_allclose(ours[:, column], sign * theirs[:, column], rtol=1e-4, atol=1e-4)
    assert projection.axis_labels[0].startswith("PC 1")


def test_dims_pick_raw_dimensions_and_one_dimension_is_refused() -> None:
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    projection = fit_projection(features, dims=(2, 0))
    np.testing.assert_array_equal(projection(features), features[:, [2, 0]])
    with pytest.raises(CLAnalyzeError, match="only 3 dimensions"):
        fit_projection(features, dims=(0, 3))
    with pytest.raises(CLAnalyzeError, match="dimension 1"):
        fit_projection(features[:, :1])


def test_parse_epochs_accepts_numbers_and_keywords() -> None:
    assert parse_epochs("0,12,32,last") == (0, 12, 32, "last")
    assert parse_epochs("peak, first") == ("peak", "first")
    assert parse_epochs(None) is None
    with pytest.raises(CLAnalyzeError, match="not an epoch"):
        parse_epochs("0,best")


def test_pca_is_fitted_once_on_the_last_train_epoch(tmp_path: Path) -> None:
    store = write_store(tmp_path / "d3", dim=3)
    run = load_plot_run(store, max_points=None)
    with RunStore(store) as reader:
        reference = PCA(n_components=2).fit(reader.features("train", -1)).components_
        keep = run.labels["train"]
        for row in range(reader.rows):
            raw = reader.features("train", row)
            # The plotted sample is a permutation: match it through the sorted projections.
            expected = raw @ reference.T
            ours = run.points["train"][row]
            for column in range(2):
                signed = np.sort(np.abs(expected[:, column]))
                np.testing.assert_allclose(np.sort(np.abs(ours[:, column])), signed, atol=1e-4)
        assert np.bincount(keep).tolist() == np.bincount(reader.labels("train")).tolist()


# --- figures -----------------------------------------------------------------------------------


def test_scatter_grid_has_runs_by_splits_panels_with_fixed_limits(
    center_run: Path, softmax_run: Path
) -> None:
    # Fewer points than a split holds: the subsample is drawn.
    runs = [load_plot_run(center_run, max_points=20), load_plot_run(softmax_run, max_points=20)]
    first = scatter_figure(runs, [0, 0])
    last = scatter_figure(runs, [2, 2])
    assert len(first.axes) == 4
    for figure, row in ((first, 0), (last, 2)):
        for axes, (run, split) in zip(
            figure.axes, [(r, s) for r in runs for s in ("train", "test")], strict=True
        ):
            title = axes.get_title()
            assert title.startswith(f"{run.name} · {split} · epoch {row}")
            with RunStore(center_run if run is runs[0] else softmax_run) as store:
                accuracy = np.mean(store.predictions(split, row) == store.labels(split))
                expected = store.features(split, row)
            assert f"{100 * accuracy:.1f}%" in title
            collections = [c for c in axes.collections if isinstance(c, PathCollection)]
            offsets = np.asarray(collections[0].get_offsets())
            assert len(offsets) == 20
            # Every plotted point is one of the stored features of that epoch.
            distance = np.abs(offsets[:, None, :] - expected[None, :, :]).sum(-1).min(axis=1)
            assert distance.max() < 1e-4
            assert axes.get_xlim() == pytest.approx(run.limits[0])
            assert axes.get_ylim() == pytest.approx(run.limits[1])
    # The center run marks its centers; the softmax run has only the point cloud.
    assert len(first.axes[0].collections) == 2
    assert len(first.axes[2].collections) == 1
    legend_labels = [t.get_text() for t in first.legends[0].get_texts()]
    assert legend_labels[:10] == list(runs[0].class_names[:10])
    assert legend_labels[-1] == "center"


def test_limits_cover_all_epochs_with_quantiles(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "r", epochs=4), max_points=None)
    stacked = np.concatenate([run.points["train"], run.points["test"]], axis=1).reshape(-1, 2)
    low = np.quantile(stacked, 0.005, axis=0)
    high = np.quantile(stacked, 0.995, axis=0)
    low = np.minimum(low, run.centers.reshape(-1, 2).min(axis=0))  # type: ignore[union-attr]
    high = np.maximum(high, run.centers.reshape(-1, 2).max(axis=0))  # type: ignore[union-attr]
    (x0, x1), (y0, y1) = run.limits
    # Square limits that contain the padded robust box of every epoch, centred on it.
    assert x1 - x0 == pytest.approx(y1 - y0)
    assert x0 < low[0] and y0 < low[1] and x1 > high[0] and y1 > high[1]
    assert (x0 + x1) / 2 == pytest.approx((low[0] + high[0]) / 2, abs=1e-6)
    assert max(x1 - x0, y1 - y0) == pytest.approx(1.12 * max(high - low))


def test_titles_show_silhouette_from_the_metrics_frame(tmp_path: Path) -> None:
    store = write_store(tmp_path / "r")
    metrics = pd.DataFrame(
        {
            "epoch": [2, 2, 2],
            "split": ["test", "test", "train"],
            "metric": ["silhouette", "silhouette", "silhouette"],
            "class": ["", "class 0", ""],
            "value": [0.4234, 0.9, 0.1],
        }
    )
    with_metrics = load_plot_run(store, metrics=metrics)
    figure = scatter_figure([with_metrics], [2])
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0].endswith("sil 0.10") and titles[1].endswith("sil 0.42")
    plain = scatter_figure([load_plot_run(store)], [2])
    assert all("sil" not in axes.get_title() for axes in plain.axes)


def test_accuracy_figure_marks_the_earliest_peak_and_lr_steps(tmp_path: Path) -> None:
    history = {
        "test_accuracy": [0.1, 0.5, 0.8, 0.8, 0.7],
        "train_accuracy_eval": [0.1, 0.6, 0.9, 0.95, 0.97],
        "lr": [0.1, 0.1, 0.05, 0.05, 0.025],
    }
    run = load_plot_run(write_store(tmp_path / "r", epochs=5, history=history))
    assert lr_steps(run.history, run.epochs) == [2, 4]
    axes = accuracy_figure([run]).axes[0]
    peaks = [line for line in axes.lines if line.get_marker() == "*"]
    assert [(xy(p)[:, 0].tolist(), xy(p)[:, 1].tolist()) for p in peaks] == [([2], [0.8])]
    steps = sorted(float(xy(line)[0, 0]) for line in axes.lines if line.get_linestyle() == ":")
    assert steps == [2.0, 4.0]
    solid = [line for line in axes.lines if line.get_linestyle() == "-" and len(xy(line))]
    np.testing.assert_allclose(xy(solid[0])[:, 1], history["test_accuracy"])
    assert "peak 80.0% @ 2" in axes.get_legend_handles_labels()[1][0]


def test_loss_and_metric_figures_have_their_panels(tmp_path: Path) -> None:
    history = {"train_loss_ce": [np.nan, 2.0, 1.0], "test_loss_ce": [2.3, 2.1, 1.2]}
    run = load_plot_run(write_store(tmp_path / "r", history=history))
    losses = loss_figure([run])
    np.testing.assert_allclose(xy(losses.axes[0].lines[1])[:, 1], [2.3, 2.1, 1.2])
    assert metric_figure([run]) is None  # no metrics frame: no figure
    rows = [
        (epoch, split, metric, "", float(epoch + len(metric)))
        for epoch in range(3)
        for split in ("train", "test")
        for metric in ("intra_mean", "inter_mean", "inter_min", "silhouette", "fisher")
    ]
    metrics = pd.DataFrame(rows, columns=["epoch", "split", "metric", "class", "value"])
    figure = metric_figure([load_plot_run(tmp_path / "r", metrics=metrics)])
    assert figure is not None
    # A column-wide figure breaks long titles onto two lines; each panel names its unit.
    titles = [axes.get_title().replace("\n", " ") for axes in figure.axes]
    assert titles == [
        "intra-class distance",
        "inter-class distance (mean, min)",
        "silhouette",
        "Fisher ratio",
    ]
    units = [axes.get_ylabel() for axes in figure.axes]
    assert units == ["distance", "distance", "silhouette (-1..1)", "ratio"]
    intra_test = figure.axes[0].lines[0]
    np.testing.assert_allclose(xy(intra_test)[:, 1], [10.0, 11.0, 12.0])


def test_centers_figure_draws_each_center_path(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "r", epochs=3))
    figure = centers_figure(run)
    paths = [line for line in figure.axes[0].lines if len(xy(line)) == 3]
    assert len(paths) == run.num_classes
    with RunStore(tmp_path / "r") as store:
        centers = store.centers()
    assert centers is not None
    for index, line in enumerate(paths):
        np.testing.assert_allclose(xy(line), centers[:, index], rtol=1e-5)
        np.testing.assert_allclose(to_rgb(line.get_color()), class_colors(run.num_classes)[index])
    no_centers = load_plot_run(write_store(tmp_path / "s", with_centers=False))
    with pytest.raises(CLAnalyzeError, match="no learned centers"):
        centers_figure(no_centers)


def test_distance_heatmaps_show_class_mean_distances_at_peak_and_last(tmp_path: Path) -> None:
    history = {"test_accuracy": [0.2, 0.9, 0.5]}
    store = write_store(tmp_path / "r", dim=3, history=history)
    run = load_plot_run(store)
    assert list(run.distances) == ["peak (epoch 1)", "last (epoch 2)"]
    figure = distance_heatmap_figure(run.distances, run.class_names)
    images = [axes.images[0] for axes in figure.axes if axes.images]
    assert len(images) == 2
    with RunStore(store) as reader:
        for image, row in zip(images, (1, 2), strict=True):
            features, labels = reader.features("test", row), reader.labels("test")
            means = np.stack([features[labels == c].mean(axis=0) for c in range(4)])
            expected = np.linalg.norm(means[:, None] - means[None], axis=-1)
            assert isinstance(image, AxesImage)
            np.testing.assert_allclose(np.asarray(image.get_array()), expected, rtol=1e-4)
    assert images[0].get_clim() == images[1].get_clim()  # one colour scale


# --- plot_runs and the command -----------------------------------------------------------------


def assert_valid_figure_files(stem: Path) -> None:
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_plot_runs_writes_every_figure(center_run: Path, softmax_run: Path, tmp_path: Path) -> None:
    options = PlotOptions(out=tmp_path / "figs", epochs=(0, "peak"), animation=False, metrics=False)
    result = plot_runs([center_run, softmax_run], options)
    stems = {path.with_suffix("") for path in result.files}
    expected = {
        "scatter_epoch000",
        "scatter_peak",
        "accuracy",
        "loss",
        "centers_center",
        "distances_center",
        "distances_softmax",
        "class_accuracy",
        "margins_center",
        "margins_softmax",
    }
    assert expected <= {stem.name for stem in stems}
    assert "centers_softmax" not in {stem.name for stem in stems}
    for stem in stems:
        assert_valid_figure_files(stem)
    with Image.open(tmp_path / "figs" / "accuracy.png") as image:
        # paper style: one 3.4 in column at 300 dpi (tight bbox trims a little)
        assert 0.8 * 3.4 * 300 < image.width < 1.1 * 3.4 * 300


def test_slides_style_makes_larger_figures(center_run: Path) -> None:
    run = load_plot_run(center_run, max_points=20)
    paper = accuracy_figure([run], "paper")
    slides = accuracy_figure([run], "slides")
    assert slides.get_figwidth() > 2 * paper.get_figwidth()
    assert figure_style("slides").font_size > figure_style("paper").font_size


def test_one_epoch_test_only_store_without_centers_plots(tmp_path: Path) -> None:
    store = write_store(tmp_path / "embed", epochs=1, splits=("test",), with_centers=False)
    options = PlotOptions(out=tmp_path / "out", metrics=False, figure_formats=("png",))
    result = plot_runs([store], options)
    names = {path.name for path in result.files}
    assert {"scatter_last.png", "animation.gif", "animation.mp4"} <= names
    assert not any(name.startswith("centers_") for name in names)


def test_runs_with_different_epoch_counts_hold_the_shorter_one(tmp_path: Path) -> None:
    long = load_plot_run(write_store(tmp_path / "long", epochs=4))
    short = load_plot_run(write_store(tmp_path / "short", epochs=2))
    assert [short.row_at(epoch) for epoch in range(4)] == [0, 1, 1, 1]
    figure = scatter_figure([long, short], [long.resolve(3), short.resolve(3)])
    assert figure.axes[2].get_title().startswith("short · train · epoch 1")
    assert figure.axes[0].get_title().startswith("long · train · epoch 3")


def test_run_still_being_written_plots_its_completed_epochs(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(3), 10)
    writer = RunWriter.create(
        tmp_path / "live",
        dataset="synthetic",
        class_names=["a", "b", "c"],
        feat_dim=2,
        splits={"test": (labels, np.arange(30))},
        history_names=HISTORY,
        with_centers=False,
    )
    try:
        for epoch in range(2):
            writer.append_epoch(
                epoch,
                scalars={},
                features={"test": ring_features(epoch, "test", labels)},
                predictions={"test": labels},
            )
        run = load_plot_run(tmp_path / "live")
        assert run.epochs.tolist() == [0, 1]
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda tmp: tmp / "missing", [], "does not exist"),
        (lambda tmp: write_store(tmp / "empty", epochs=0), [], "no completed epoch"),
        (lambda tmp: write_store(tmp / "r"), ["--epochs", "7"], "epoch 7 is in no run"),
        (lambda tmp: write_store(tmp / "d1", dim=1), [], "dimension 1"),
        (lambda tmp: write_store(tmp / "r"), ["--dims", "0,0"], "one dimension twice"),
        (lambda tmp: write_store(tmp / "r"), ["--formats", "avi"], "--formats"),
    ],
)
def test_bad_input_is_one_line_error(
    tmp_path: Path, make: Callable[[Path], Path], extra: list[str], message: str
) -> None:
    run = make(tmp_path)
    code, error, _ = invoke(
        "plot", str(run), "--out", str(tmp_path / "o"), "--no-animation", *extra
    )
    assert code != 0
    assert isinstance(error, CLAnalyzeError)
    assert message in str(error) and "\n" not in str(error)


def test_mixed_datasets_need_allow_mixed(tmp_path: Path) -> None:
    first = write_store(tmp_path / "a", dataset="mnist")
    second = write_store(tmp_path / "b", dataset="fashion-mnist")
    base = ["plot", str(first), str(second), "--out", str(tmp_path / "o"), "--no-animation"]
    base += ["--epochs", "last", "--no-metrics"]
    code, error, _ = invoke(*base)
    assert code != 0 and isinstance(error, CLAnalyzeError)
    assert "--allow-mixed" in str(error)
    options = PlotOptions(
        out=tmp_path / "o", epochs=("last",), animation=False, metrics=False, allow_mixed=True
    )
    result = plot_runs([first, second], replace(options, figure_formats=("png",)))
    assert tmp_path / "o" / "scatter_last.png" in result.files


def test_cli_writes_to_the_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = write_store(tmp_path / "runA", epochs=2)
    monkeypatch.chdir(tmp_path)
    code, error, _ = invoke(
        "plot", str(store), "--no-animation", "--quiet", "--no-metrics", "--epochs", "peak"
    )
    assert code == 0, error
    assert_valid_figure_files(tmp_path / "reports" / "runA-plots" / "scatter_peak")


def test_plot_never_writes_over_files_it_did_not_write(tmp_path: Path) -> None:
    store = write_store(tmp_path / "runA", epochs=2)
    out = tmp_path / "paper"
    out.mkdir()
    (out / "accuracy.png").write_bytes(b"my own figure")
    fast = ["--no-animation", "--no-metrics", "--epochs", "last"]
    code, error, _ = invoke("plot", str(store), "--out", str(out), *fast)
    assert code != 0 and "did not write" in str(error)
    assert (out / "accuracy.png").read_bytes() == b"my own figure"
    # Its own folder it may write again.
    args = ["plot", str(store), "--out", str(tmp_path / "own"), *fast]
    assert invoke(*args)[0] == 0 and invoke(*args)[0] == 0


def test_pca_of_a_diverged_run_is_fitted_on_its_last_finite_epoch(tmp_path: Path) -> None:
    def diverging(epoch: int, split: str, labels: np.ndarray) -> np.ndarray:
        features = ring_features(epoch, split, labels, dim=3)
        return np.full_like(features, np.nan) if epoch == 2 else features

    store = write_store(tmp_path / "nan", dim=3, features=diverging)
    run = load_plot_run(store, max_points=None)
    with RunStore(store) as reader:
        reference = PCA(n_components=2).fit(reader.features("train", 1)).components_
        expected = reader.features("train", 1) @ reference.T
    for column in range(2):
        np.testing.assert_allclose(
            np.sort(np.abs(run.points["train"][1][:, column])),
            np.sort(np.abs(expected[:, column])),
            atol=1e-4,
        )
    assert np.isnan(run.points["train"][2]).all()
    assert all(np.isfinite(value) for axis in run.limits for value in axis)

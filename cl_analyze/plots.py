"""Static figures of runs: feature scatters per epoch, accuracy/loss/metric curves, centers.

``plot_runs`` is the one entry point (``cl-analyze plot`` and the report call it): it loads each run
once into a ``PlotRun`` (2-D points, subsampled, with limits fixed across epochs), then writes every
figure as PNG and PDF and, unless asked not to, the side-by-side animation (``animate.py``).
The ``*_figure`` functions return matplotlib Figures for reuse elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cl_analyze.atomic import write_text_atomic
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.figures import (
    FIGURE_FORMATS,
    FigureStyle,
    Limits,
    class_colors,
    figure_style,
    robust_limits,
    run_colors,
    save_figure,
)
from cl_analyze.metrics import class_mean_distances
from cl_analyze.progress import Reporter
from cl_analyze.store import SPLITS, RunStore, writer_alive

if TYPE_CHECKING:
    import pandas as pd

EPOCH_KEYWORDS = ("first", "peak", "last")
# Written last into a plot folder: marks it as ours, so a later `plot` may write into it again.
PLOT_MANIFEST = "plots.json"
PLOT_FORMAT = "cl-analyze-plots"
SPLIT_CHOICES = ("train", "test", "both")
ANIMATION_FORMATS = ("gif", "mp4")
EpochSpec = int | str

# Metric panels of ``metric_figure``: (metric names drawn in the panel, panel title).
METRIC_PANELS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("intra_mean",), "intra-class distance"),
    (("inter_mean", "inter_min"), "inter-class distance (mean, min)"),
    (("inter_intra_ratio",), "inter / intra ratio"),
    (("silhouette",), "silhouette"),
    (("fisher",), "Fisher ratio"),
    (("feature_norm", "center_norm"), "feature norm (center norm)"),
)


# --- options and parsing -----------------------------------------------------------------------


@dataclass(frozen=True)
class PlotOptions:
    """What ``plot_runs`` draws and where; the defaults are those of ``cl-analyze plot``."""

    out: Path | None = None  # default: reports/<first run>/figures
    epochs: tuple[EpochSpec, ...] | None = None  # static scatters; default: first, peak, last
    split: str = "both"
    max_points: int | None = 10_000  # per split and run; None keeps every point
    dims: tuple[int, int] | None = None  # two raw feature dimensions instead of PCA
    style: str = "paper"
    figure_formats: tuple[str, ...] = FIGURE_FORMATS  # png (web) and pdf (vector, for papers)
    animation: bool = True
    animation_formats: tuple[str, ...] = ANIMATION_FORMATS
    fps: float = 8.0
    allow_mixed: bool = False
    metrics: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        # Checked up front: failing after minutes of metrics and figures would waste them.
        if self.max_points is not None and self.max_points < 1:
            raise CLAnalyzeError(f"--max-points must be >= 1, got {self.max_points}")
        if not self.fps > 0:
            raise CLAnalyzeError(f"--fps must be > 0, got {self.fps}")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise CLAnalyzeError(f"--out {self.out} is a file: pass a folder for the figures")


@dataclass(frozen=True)
class PlotResult:
    out_dir: Path
    files: tuple[Path, ...]


def parse_epochs(text: str | None) -> tuple[EpochSpec, ...] | None:
    """``"0,12,32,last"`` -> ``(0, 12, 32, "last")``; keywords: first, peak, last."""
    if text is None or not text.strip():
        return None
    specs: list[EpochSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if part in EPOCH_KEYWORDS:
            specs.append(part)
        elif part.isdigit():
            specs.append(int(part))
        else:
            raise CLAnalyzeError(
                f"--epochs: {part!r} is not an epoch: give numbers or {', '.join(EPOCH_KEYWORDS)}"
                " separated by commas, e.g. 0,12,last"
            )
    return tuple(specs)


def parse_dims(text: str | None) -> tuple[int, int] | None:
    """``"0,1"`` -> ``(0, 1)``: the two raw feature dimensions to draw."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise CLAnalyzeError(f"--dims {text!r}: give two dimension numbers, e.g. --dims 0,1")
    first, second = (int(p) for p in parts)
    if first == second:
        raise CLAnalyzeError(f"--dims {text!r} names one dimension twice: pick two different ones")
    return first, second


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in ANIMATION_FORMATS]
    if unknown or not formats:
        raise CLAnalyzeError(
            f"--formats {text!r}: animation formats are {', '.join(ANIMATION_FORMATS)}"
        )
    return formats


def split_names(choice: str) -> tuple[str, ...]:
    if choice not in SPLIT_CHOICES:
        raise CLAnalyzeError(f"--split {choice!r}: use one of {', '.join(SPLIT_CHOICES)}")
    return SPLITS if choice == "both" else (choice,)


# --- a run, ready to draw ----------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """A linear map from D-dimensional features to the 2-D plane of the plots.

    PCA axes are fitted on centred features but applied without subtracting the mean, so the
    origin stays the origin (a collapse toward it shows) and every epoch uses the same map.
    """

    basis: np.ndarray  # (D, 2)
    axis_labels: tuple[str, str]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float32) @ self.basis.astype(np.float32)


def fit_projection(features: np.ndarray, dims: tuple[int, int] | None = None) -> Projection:
    """Identity for 2-D features, ``dims`` if given, else the top two principal axes."""
    dimension = features.shape[1]
    if dimension < 2:
        raise CLAnalyzeError(
            f"features have dimension {dimension}: a scatter needs at least 2"
            " (train with --feat-dim 2 or more)"
        )
    if dims is not None:
        if max(dims) >= dimension:
            raise CLAnalyzeError(
                f"--dims {dims[0]},{dims[1]}: features have only {dimension} dimensions"
                f" (0..{dimension - 1})"
            )
        basis = np.zeros((dimension, 2))
        basis[dims[0], 0] = basis[dims[1], 1] = 1.0
        return Projection(basis, (f"feature {dims[0]}", f"feature {dims[1]}"))
    if dimension == 2:
        return Projection(np.eye(2), ("feature 0", "feature 1"))
    if len(features) < 2:
        raise CLAnalyzeError(
            "no finite features to fit the PCA on (did training diverge at once?):"
            " pick two raw dimensions with --dims 0,1"
        )
    centred = np.asarray(features, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:2].T
    # Fix the sign (SVD's is arbitrary): the largest loading of each axis is positive.
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), [0, 1]])
    basis = basis * np.where(signs == 0, 1.0, signs)
    explained = singular**2 / max(float(np.sum(singular**2)), 1e-300)
    labels = (f"PC 1 ({100 * explained[0]:.0f}%)", f"PC 2 ({100 * explained[1]:.0f}%)")
    return Projection(basis, labels)


def stratified_sample(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of ``limit`` samples with each class in proportion, in a shuffled drawing order.

    Deterministic for a seed. The order is shuffled so no class is always drawn on top.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if limit is None or limit >= len(labels):
        return rng.permutation(len(labels))
    if limit < 1:
        raise CLAnalyzeError(f"--max-points {limit}: give a positive number of points")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (limit / len(labels))
    take = np.floor(quota).astype(np.int64)
    # Largest remainders get the points left over, so the total is exactly ``limit``.
    leftover = limit - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:count]
        for label, count in zip(classes, take, strict=True)
    ]
    return rng.permutation(np.concatenate(chosen))


@dataclass(frozen=True)
class PlotRun:
    """One run loaded for plotting: 2-D points per epoch row, fixed limits, curves, metrics."""

    name: str
    dataset: str
    class_names: tuple[str, ...]
    epochs: np.ndarray  # (E,) epoch of each row
    points: Mapping[str, np.ndarray]  # split -> (E, n, 2), the same n samples in every row
    labels: Mapping[str, np.ndarray]  # split -> (n,) labels of those samples
    accuracy: Mapping[str, np.ndarray]  # split -> (E,) accuracy over the whole split
    centers: np.ndarray | None  # (E, C, 2) learned centers, projected
    history: Mapping[str, np.ndarray]
    limits: Limits
    axis_labels: tuple[str, str]
    distances: Mapping[str, np.ndarray]  # "peak (epoch 3)" -> (C, C) class-mean distances
    metrics: pd.DataFrame | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.points)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def row_at(self, epoch: int) -> int:
        """The row shown at ``epoch``: the latest row not after it (a shorter run holds)."""
        return max(int(np.searchsorted(self.epochs, epoch, side="right")) - 1, 0)

    def accuracy_curve(self, split: str) -> np.ndarray:
        """(E,) from the training history when recorded, else from the stored predictions."""
        key = "test_accuracy" if split == "test" else "train_accuracy_eval"
        recorded = np.asarray(self.history.get(key, []), dtype=np.float64)
        fallback = self.accuracy.get(split, np.full(len(self.epochs), np.nan))
        if len(recorded) != len(self.epochs):
            return fallback
        return np.where(np.isfinite(recorded), recorded, fallback)

    @property
    def peak_row(self) -> int:
        """Row of the highest test accuracy (the earliest on ties); the last row without any."""
        for split in ("test", "train"):
            curve = self.accuracy_curve(split)
            if np.isfinite(curve).any():
                return int(np.nanargmax(curve))
        return len(self.epochs) - 1

    def metric_curve(self, split: str, metric: str) -> np.ndarray:
        """(E,) a whole-split metric from the metrics frame, NaN where it has none."""
        values = np.full(len(self.epochs), np.nan)
        if self.metrics is None or self.metrics.empty:
            return values
        frame = self.metrics
        selected = frame[
            (frame["split"] == split) & (frame["metric"] == metric) & (frame["class"] == "")
        ]
        by_epoch = dict(zip(selected["epoch"].astype(int), selected["value"], strict=True))
        for row, epoch in enumerate(self.epochs):
            values[row] = by_epoch.get(int(epoch), np.nan)
        return values

    def resolve(self, spec: EpochSpec) -> int:
        """The row for an ``--epochs`` entry; numbers hold the last row before them."""
        if spec == "first":
            return 0
        if spec == "last":
            return len(self.epochs) - 1
        if spec == "peak":
            return self.peak_row
        return self.row_at(int(spec))


def load_plot_run(
    run: Path,
    *,
    splits: tuple[str, ...] = SPLITS,
    max_points: int | None = 10_000,
    dims: tuple[int, int] | None = None,
    metrics: pd.DataFrame | None = None,
    seed: int = 0,
    name: str | None = None,
) -> PlotRun:
    """Read a run's completed rows, project them to 2-D and subsample, ready for any figure."""
    with RunStore(run) as store:
        if store.rows == 0:
            raise CLAnalyzeError(
                f"{store.path} has no completed epoch yet: wait for epoch 0 to finish"
            )
        available = tuple(s for s in splits if store.has_features(s))
        if not available:
            wanted = " or ".join(splits)
            raise CLAnalyzeError(
                f"{store.path} stores no {wanted} features: pick another --split"
                " or rebuild them with `cl-analyze embed`"
            )
        last = store.rows - 1
        fit_split = "train" if "train" in available else available[0]
        projection = fit_projection(_latest_finite_features(store, fit_split), dims)
        points: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        accuracy: dict[str, np.ndarray] = {}
        for split in available:
            split_labels = store.labels(split)
            keep = stratified_sample(split_labels, max_points, seed)
            labels[split] = split_labels[keep]
            points[split] = np.stack(
                [projection(store.features(split, row)[keep]) for row in range(store.rows)]
            )
            predictions = store.predictions(split)
            accuracy[split] = (predictions == split_labels[None, :]).mean(axis=1)
        raw_centers = store.centers()
        centers = None if raw_centers is None else projection(raw_centers)
        history = store.history
        partial = PlotRun(
            name=name or store.name,
            dataset=store.dataset,
            class_names=tuple(store.class_names),
            epochs=store.epochs.astype(np.int64),
            points=points,
            labels=labels,
            accuracy=accuracy,
            centers=centers,
            history=history,
            limits=((0.0, 1.0), (0.0, 1.0)),
            axis_labels=projection.axis_labels,
            distances={},
            metrics=metrics,
        )
        # Class-mean distances use the raw features of the whole split, not the 2-D sample.
        distance_split = "test" if "test" in available else available[0]
        distances = {}
        peak = partial.peak_row
        shown = [("peak", peak), ("last", last)] if peak != last else [("peak = last", last)]
        for label, row in shown:
            epoch = int(partial.epochs[row])
            distances[f"{label} (epoch {epoch})"] = class_mean_distances(
                store.features(distance_split, row),
                store.labels(distance_split),
                store.num_classes,
            )
    limits = robust_limits(np.concatenate([p.reshape(-1, 2) for p in points.values()]), centers)
    return replace(partial, limits=square_limits(limits), distances=distances)


def _latest_finite_features(store: RunStore, split: str) -> np.ndarray:
    """The last row's features, or those of the latest row that has finite ones: a diverged
    run ends in NaN, and the projection is fitted where the features still mean something."""
    for row in range(store.rows - 1, -1, -1):
        features = store.features(split, row)
        finite = features[np.isfinite(features).all(axis=1)]
        if len(finite) >= 3 or row == 0:
            return finite
    raise AssertionError("unreachable: row 0 always returns")


def square_limits(limits: Limits) -> Limits:
    """Widen the narrower axis so both span the same range: square panels then show true
    distances (equal aspect) without changing the limits' centre."""
    (x0, x1), (y0, y1) = limits
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return ((cx - half, cx + half), (cy - half, cy + half))


# --- scatter grid (static figures and animation frames) ----------------------------------------


def _percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}%"


def panel_title(run: PlotRun, split: str, row: int) -> str:
    """Two lines: run, split and epoch; then the split's accuracy and silhouette when known."""
    epoch = int(run.epochs[row])
    details = [f"{split} acc {_percent(float(run.accuracy_curve(split)[row]))}"]
    silhouette = float(run.metric_curve(split, "silhouette")[row])
    if np.isfinite(silhouette):
        details.append(f"sil {silhouette:.2f}")
    return f"{run.name} · {split} · epoch {epoch}\n" + " · ".join(details)


class ScatterGrid:
    """A runs x splits grid of scatter panels, built once; ``show`` moves the points.

    Each panel is ONE PathCollection holding every class (per-point colours set once), so a new
    epoch costs only ``set_offsets`` and a title: this is what makes animation frames cheap.
    With ``animated=True`` the changing artists are left out of ``canvas.draw`` for blitting.
    """

    def __init__(
        self,
        runs: Sequence[PlotRun],
        splits: Sequence[str],
        style: FigureStyle,
        *,
        animated: bool = False,
        dpi: float | None = None,
    ) -> None:
        if not runs:
            raise CLAnalyzeError("no run to plot: pass at least one run folder")
        self.runs = list(runs)
        self.splits = list(splits)
        self.style = style
        num_classes = max(run.num_classes for run in self.runs)
        self.colors = class_colors(num_classes)
        nrows, ncols = len(self.runs), len(self.splits)
        legend_rows = math.ceil((num_classes + 1) / min(num_classes + 1, 6))
        with style.context():
            self.figure = Figure(
                figsize=(
                    ncols * style.panel + 0.5,
                    nrows * (style.panel + 0.35) + 0.2 + 0.14 * legend_rows,
                ),
                dpi=dpi or style.frame_dpi,
                layout="constrained",
            )
            FigureCanvasAgg(self.figure)
            axes = self.figure.subplots(nrows, ncols, squeeze=False)
            self.axes: list[list[Axes]] = [list(row) for row in axes]
            self.points: list[list[PathCollection | None]] = []
            self.centers: list[list[PathCollection | None]] = []
            self.titles: list[list[Text]] = []
            for run, row_axes in zip(self.runs, self.axes, strict=True):
                self._build_row(run, row_axes, animated)
            self._add_legend(num_classes)

    def panels(self) -> list[tuple[PlotRun, str, Axes, PathCollection | None, Text]]:
        """Each panel's run, split, axes, centers artist and title, row by row."""
        return [
            (
                run,
                split,
                self.axes[row][column],
                self.centers[row][column],
                self.titles[row][column],
            )
            for row, run in enumerate(self.runs)
            for column, split in enumerate(self.splits)
        ]

    def _build_row(self, run: PlotRun, row_axes: list[Axes], animated: bool) -> None:
        points_row: list[PathCollection | None] = []
        centers_row: list[PathCollection | None] = []
        titles_row: list[Text] = []
        for column, (axes, split) in enumerate(zip(row_axes, self.splits, strict=True)):
            (x0, x1), (y0, y1) = run.limits
            axes.set_xlim(x0, x1)
            axes.set_ylim(y0, y1)
            axes.set_box_aspect(1.0)
            axes.xaxis.set_major_locator(MaxNLocator(4))
            axes.yaxis.set_major_locator(MaxNLocator(4))
            if column == 0:
                axes.set_ylabel(run.axis_labels[1])
            axes.set_xlabel(run.axis_labels[0])
            title = axes.set_title(" \n ", animated=animated)
            titles_row.append(title)
            if split not in run.points:
                axes.text(0.5, 0.5, f"no {split} features", ha="center", transform=axes.transAxes)
                points_row.append(None)
                centers_row.append(None)
                continue
            scatter = axes.scatter(
                run.points[split][0, :, 0],
                run.points[split][0, :, 1],
                s=self.style.marker_size,
                c=self.colors[run.labels[split]],
                marker="o",
                linewidths=0,
                antialiased=False,
                rasterized=True,
                animated=animated,
            )
            points_row.append(scatter)
            centers_row.append(self._centers_artist(axes, run, animated))
        self.points.append(points_row)
        self.centers.append(centers_row)
        self.titles.append(titles_row)

    def _centers_artist(self, axes: Axes, run: PlotRun, animated: bool) -> PathCollection | None:
        if run.centers is None:
            return None
        return axes.scatter(
            run.centers[0, :, 0],
            run.centers[0, :, 1],
            s=self.style.marker_size * 28,
            c=self.colors[: run.num_classes],
            marker="X",
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            animated=animated,
        )

    def _add_legend(self, num_classes: int) -> None:
        names = max((run.class_names for run in self.runs), key=len)
        dot = 0.6 * self.style.font_size  # legend markers scale with the text
        handles = [
            Line2D(
                [], [], ls="", marker="o", ms=dot, mec="none", mfc=self.colors[c], label=names[c]
            )
            for c in range(num_classes)
        ]
        if any(run.centers is not None for run in self.runs):
            handles.append(
                Line2D(
                    [], [], ls="", marker="X", ms=1.2 * dot, mfc="white", mec="k", label="center"
                )
            )
        self.figure.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(handles), 6 if len(self.splits) > 1 else 4),
            handletextpad=0.1,
            columnspacing=0.8,
            borderaxespad=0.1,
        )

    def show(self, rows: Sequence[int]) -> None:
        """Draw each run at its row (``rows[i]`` for run i)."""
        for index, (run, row) in enumerate(zip(self.runs, rows, strict=True)):
            for column, split in enumerate(self.splits):
                scatter = self.points[index][column]
                if scatter is not None:
                    scatter.set_offsets(run.points[split][row])
                centers = self.centers[index][column]
                if centers is not None and run.centers is not None:
                    centers.set_offsets(run.centers[row])
                self.titles[index][column].set_text(
                    panel_title(run, split, row) if split in run.points else f"{run.name}"
                )

    def show_epoch(self, epoch: int) -> None:
        """Every run at ``epoch``; runs that ended earlier hold their last row."""
        self.show([run.row_at(epoch) for run in self.runs])


def scatter_figure(
    runs: Sequence[PlotRun],
    rows: Sequence[int] | None = None,
    *,
    splits: Sequence[str] | None = None,
    style: FigureStyle | str = "paper",
) -> Figure:
    """Runs x splits scatter panels, each run at its row (default: its last)."""
    style = figure_style(style) if isinstance(style, str) else style
    splits = list(splits or _union_splits(runs))
    grid = ScatterGrid(runs, splits, style)
    grid.show(list(rows) if rows is not None else [len(run.epochs) - 1 for run in runs])
    return grid.figure


def _union_splits(runs: Sequence[PlotRun]) -> list[str]:
    return [s for s in SPLITS if any(s in run.points for run in runs)]


# --- curves ------------------------------------------------------------------------------------


def lr_steps(history: Mapping[str, np.ndarray], epochs: np.ndarray) -> list[int]:
    """Epochs whose learning rate differs from the previous row's (NaN rows ignored)."""
    lr = np.asarray(history.get("lr", []), dtype=np.float64)
    if len(lr) != len(epochs):
        return []
    steps = []
    previous = np.nan
    for epoch, value in zip(epochs, lr, strict=True):
        if np.isfinite(value):
            if np.isfinite(previous) and not np.isclose(value, previous, rtol=1e-9, atol=0):
                steps.append(int(epoch))
            previous = value
    return steps


def _curves_figure(style: FigureStyle, panels: int, height_ratio: float) -> tuple[Figure, list]:
    columns = min(panels, 2)
    rows = math.ceil(panels / columns)
    figure = Figure(
        figsize=(style.width, style.width * height_ratio * rows / (columns if panels > 1 else 1)),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for extra in axes[panels:]:
        extra.remove()
    return figure, axes[:panels]


def accuracy_figure(runs: Sequence[PlotRun], style: FigureStyle | str = "paper") -> Figure:
    """Train (dashed) and test (solid) accuracy per epoch for every run, peaks and lr steps."""
    style = figure_style(style) if isinstance(style, str) else style
    colors = run_colors(len(runs))
    with style.context():
        figure, (axes,) = _curves_figure(style, 1, 0.62)
        for run, color in zip(runs, colors, strict=True):
            test = run.accuracy_curve("test")
            train = run.accuracy_curve("train")
            label = run.name
            if np.isfinite(test).any():
                peak = run.peak_row
                label += f" (peak {_percent(float(test[peak]))} @ {int(run.epochs[peak])})"
                axes.plot(run.epochs, test, color=color, label=label)
                axes.plot(
                    run.epochs[peak],
                    test[peak],
                    marker="*",
                    ms=7,
                    color=color,
                    mec="k",
                    mew=0.4,
                    ls="",
                    zorder=4,
                )
                label = "_nolegend_"
            if np.isfinite(train).any():
                axes.plot(run.epochs, train, color=color, ls="--", lw=0.8, label=label)
            for step in lr_steps(run.history, run.epochs):
                axes.axvline(step, color=color, ls=":", lw=0.7, alpha=0.7)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel("accuracy")
        style_handles = [
            Line2D([], [], color="0.3", label="test"),
            Line2D([], [], color="0.3", ls="--", lw=0.8, label="train"),
            Line2D([], [], color="0.3", ls=":", lw=0.7, label="lr step"),
            Line2D([], [], color="0.3", marker="*", ls="", mec="k", mew=0.4, label="peak"),
        ]
        run_handles, _ = axes.get_legend_handles_labels()
        figure.legend(
            handles=run_handles + style_handles,
            loc="outside lower center",
            ncol=2,
            columnspacing=1.0,
        )
    return figure


def loss_figure(runs: Sequence[PlotRun], style: FigureStyle | str = "paper") -> Figure:
    """Cross-entropy (train solid, test dashed) and, for center-loss runs, the center loss."""
    style = figure_style(style) if isinstance(style, str) else style
    colors = run_colors(len(runs))

    def curve(run: PlotRun, key: str) -> np.ndarray:
        values = np.asarray(run.history.get(key, []), dtype=np.float64)
        return values if len(values) == len(run.epochs) else np.full(len(run.epochs), np.nan)

    with_center = [run for run in runs if np.isfinite(curve(run, "train_loss_center")).any()]
    with style.context():
        figure, axes = _curves_figure(style, 2 if with_center else 1, 0.62)
        for run, color in zip(runs, colors, strict=True):
            axes[0].plot(run.epochs, curve(run, "train_loss_ce"), color=color, label=run.name)
            axes[0].plot(run.epochs, curve(run, "test_loss_ce"), color=color, ls="--", lw=0.8)
            if run in with_center:
                axes[1].plot(run.epochs, curve(run, "train_loss_center"), color=color)
        axes[0].set_title("cross-entropy (train —, test --)")
        if with_center:
            axes[1].set_title("center loss (train)")
            axes[1].set_yscale("log")
        for each in axes:
            each.set_xlabel("epoch")
            each.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.legend(loc="outside lower center", ncol=min(len(runs), 3))
    return figure


def metric_figure(runs: Sequence[PlotRun], style: FigureStyle | str = "paper") -> Figure | None:
    """Geometry metrics per epoch, one panel per metric, a colour per run (test solid, train
    dashed; a second metric in a panel dotted). None when no run has a metrics frame."""
    style = figure_style(style) if isinstance(style, str) else style
    with_metrics = [run for run in runs if run.metrics is not None and not run.metrics.empty]
    if not with_metrics:
        return None
    present: set[str] = set()
    for run in with_metrics:
        present |= set(run.metrics["metric"]) if run.metrics is not None else set()
    panels = [(names, title) for names, title in METRIC_PANELS if present & set(names)]
    if not panels:
        return None
    colors = dict(zip((run.name for run in runs), run_colors(len(runs)), strict=True))
    split_styles = {"test": "-", "train": "--"}
    with style.context():
        figure, axes_list = _curves_figure(style, len(panels), 0.55)
        for axes, (names, title) in zip(axes_list, panels, strict=True):
            for run in with_metrics:
                for split, line_style in split_styles.items():
                    for order, metric in enumerate(names):
                        values = run.metric_curve(split, metric)
                        if not np.isfinite(values).any():
                            continue
                        axes.plot(
                            run.epochs,
                            values,
                            color=colors[run.name],
                            ls=":" if order else line_style,
                            lw=0.9,
                        )
            axes.set_title(title)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axes in axes_list[-2:]:
            axes.set_xlabel("epoch")
        handles = [Line2D([], [], color=colors[run.name], label=run.name) for run in with_metrics]
        handles += [
            Line2D([], [], color="0.3", ls="-", label="test"),
            Line2D([], [], color="0.3", ls="--", label="train"),
            Line2D([], [], color="0.3", ls=":", label="min / center norm"),
        ]
        figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    return figure


def centers_figure(run: PlotRun, style: FigureStyle | str = "paper") -> Figure:
    """Each learned center's path over the epochs (o start, X end) over the last epoch's
    features in light colours."""
    style = figure_style(style) if isinstance(style, str) else style
    if run.centers is None:
        raise CLAnalyzeError(f"run {run.name} has no learned centers: pick a center-loss run")
    colors = class_colors(run.num_classes)
    with style.context():
        figure = Figure(figsize=(style.width * 0.75, style.width * 0.85), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        background = "test" if "test" in run.points else run.splits[0]
        last = run.points[background][-1]
        axes.scatter(
            last[:, 0],
            last[:, 1],
            s=style.marker_size,
            linewidths=0,
            alpha=0.25,
            c=colors[run.labels[background]],
            rasterized=True,
        )
        for index in range(run.num_classes):
            path = run.centers[:, index]
            axes.plot(
                path[:, 0],
                path[:, 1],
                color=colors[index],
                lw=0.9,
                marker=".",
                ms=2,
                label=run.class_names[index],
            )
            axes.plot(*path[0], marker="o", ms=4, mfc="white", mec=colors[index], mew=0.8)
            axes.plot(*path[-1], marker="X", ms=5, color=colors[index], mec="k", mew=0.4)
        (x0, x1), (y0, y1) = run.limits
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
        axes.set_box_aspect(1.0)
        axes.set_xlabel(run.axis_labels[0])
        axes.set_ylabel(run.axis_labels[1])
        first, last_epoch = int(run.epochs[0]), int(run.epochs[-1])
        axes.set_title(f"{run.name}: centers, epochs {first}-{last_epoch}")
        figure.legend(
            loc="outside lower center",
            ncol=min(run.num_classes, 5),
            handletextpad=0.2,
            columnspacing=0.8,
        )
    return figure


def distance_heatmap_figure(
    distances: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    style: FigureStyle | str = "paper",
    title: str | None = None,
) -> Figure:
    """One heatmap of class-to-class distances per entry (e.g. peak and last), one colour scale."""
    style = figure_style(style) if isinstance(style, str) else style
    matrices = list(distances.values())
    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in matrices] + [np.zeros(1)])
    vmax = float(finite.max()) or 1.0
    with style.context():
        figure = Figure(
            figsize=(style.width, style.width * (0.55 if len(matrices) > 1 else 0.85)),
            layout="constrained",
        )
        FigureCanvasAgg(figure)
        axes_list = figure.subplots(1, len(matrices), squeeze=False)[0]
        image = None
        ticks = np.arange(len(class_names))
        for axes, (label, matrix) in zip(axes_list, distances.items(), strict=True):
            image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax)
            axes.set_title(label)
            axes.set_xticks(ticks, class_names, rotation=90)
            axes.set_yticks(ticks, class_names)
            axes.tick_params(length=0)
            for spine in axes.spines.values():
                spine.set_visible(False)
        if image is not None:
            figure.colorbar(image, ax=list(axes_list), shrink=0.8, label="class-mean distance")
        if title:
            figure.suptitle(title)
    return figure


# --- the command -------------------------------------------------------------------------------


def run_names(runs: Sequence[Path]) -> list[str]:
    """Folder names, with the parent added when two runs share one."""
    names = [Path(run).resolve().name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(run).resolve().parent.name}/{Path(run).resolve().name}" for run in runs]


def _load_metrics(run: Path, reporter: Reporter) -> pd.DataFrame | None:
    from cl_analyze.analysis import load_metrics

    try:
        return load_metrics(run, reporter=reporter)
    except CLAnalyzeError as error:
        reporter.log(f"metrics unavailable for {run}: {error}")
        return None


def check_same_dataset(runs: Sequence[PlotRun], allow_mixed: bool) -> None:
    datasets = {run.dataset for run in runs}
    if len(datasets) > 1 and not allow_mixed:
        listing = ", ".join(f"{run.name}: {run.dataset}" for run in runs)
        raise CLAnalyzeError(
            f"runs use different datasets ({listing}): compare runs of one dataset"
            " or pass --allow-mixed"
        )


def epoch_label(spec: EpochSpec) -> str:
    return spec if isinstance(spec, str) else f"epoch{spec:03d}"


def check_epochs(runs: Sequence[PlotRun], specs: Sequence[EpochSpec]) -> None:
    """A numbered epoch must be a completed epoch of at least one run."""
    for spec in specs:
        if isinstance(spec, int) and not any(spec in run.epochs for run in runs):
            known = ", ".join(f"{run.name}: {run.epochs.min()}..{run.epochs.max()}" for run in runs)
            raise CLAnalyzeError(
                f"epoch {spec} is in no run ({known}): pick a completed epoch, first, peak or last"
            )


def plot_runs(
    runs: Sequence[Path], options: PlotOptions, reporter: Reporter | None = None
) -> PlotResult:
    """Write every figure (PNG + PDF) and the animation for ``runs`` into one folder."""
    reporter = reporter or Reporter(quiet=True)
    if not runs:
        raise CLAnalyzeError("no run given: pass one or more run folders, e.g. artifacts/run1")
    style = figure_style(options.style)
    splits = split_names(options.split)
    for run in runs:
        if not Path(run).exists():
            raise CLAnalyzeError(f"run {run} does not exist: pass a folder written by train/embed")
    names = run_names(runs)
    loaded = [
        load_plot_run(
            Path(run),
            splits=splits,
            max_points=options.max_points,
            dims=options.dims,
            seed=options.seed,
            name=name,
        )
        for run, name in zip(runs, names, strict=True)
    ]
    check_same_dataset(loaded, options.allow_mixed)
    specs = options.epochs or ("first", "peak", "last")
    check_epochs(loaded, specs)
    for path, plot_run in zip(runs, loaded, strict=True):
        if writer_alive(Path(path)):
            reporter.log(f"{plot_run.name} is still training: plotting its completed epochs")
    if options.metrics:  # after the checks: computing metrics can take a while
        loaded = [
            replace(plot_run, metrics=_load_metrics(Path(path), reporter))
            for path, plot_run in zip(runs, loaded, strict=True)
        ]
    out_dir = options.out or Path("reports") / f"{names[0].replace('/', '_')}-plots"
    check_plot_folder(out_dir)
    files: list[Path] = []

    def save(figure: Figure | None, stem: str) -> None:
        if figure is not None:
            files.extend(save_figure(figure, out_dir / stem, style, options.figure_formats))
            reporter.log(f"wrote {out_dir / stem}.{'/.'.join(options.figure_formats)}")

    shown_splits = _union_splits(loaded)
    for spec in dict.fromkeys(specs):
        rows = [run.resolve(spec) for run in loaded]
        save(
            scatter_figure(loaded, rows, splits=shown_splits, style=style),
            f"scatter_{epoch_label(spec)}",
        )
    save(accuracy_figure(loaded, style), "accuracy")
    save(loss_figure(loaded, style), "loss")
    save(metric_figure(loaded, style), "metrics")
    for plot_run in loaded:
        slug = plot_run.name.replace("/", "_")
        if plot_run.centers is not None:
            save(centers_figure(plot_run, style), f"centers_{slug}")
        heatmap = distance_heatmap_figure(
            plot_run.distances,
            plot_run.class_names,
            style,
            title=f"{plot_run.name}: distances between class means",
        )
        save(heatmap, f"distances_{slug}")
    if options.animation:
        # Imported here: animate.py builds on this module's ScatterGrid.
        from cl_analyze.animate import write_animation

        files.extend(
            write_animation(
                loaded,
                out_dir / "animation",
                splits=shown_splits,
                style=style,
                formats=options.animation_formats,
                fps=options.fps,
                reporter=reporter,
            )
        )
    write_text_atomic(
        out_dir / PLOT_MANIFEST,
        json.dumps({"format": PLOT_FORMAT, "files": sorted(path.name for path in files)}, indent=2)
        + "\n",
    )
    return PlotResult(out_dir=out_dir, files=tuple(files))


def check_plot_folder(out: Path) -> None:
    """Write only into a new or empty folder, or one an earlier `plot` wrote (its manifest
    says so): figures are never written over files the user put there."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CLAnalyzeError(f"--out {out} is a file: pass a folder for the figures")
    if not any(out.iterdir()):
        return
    try:
        manifest = json.loads((out / PLOT_MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != PLOT_FORMAT:
        raise CLAnalyzeError(
            f"--out {out} holds files that `cl-analyze plot` did not write: pick a new or empty"
            " folder"
        )

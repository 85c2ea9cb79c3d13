"""The sweep report's figures: accuracy against each swept parameter, geometry against lambda,
and a row of last-epoch scatters with one panel per lambda."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cl_analyze.report.runs import RunData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPLICATE_PARAMETER = "seed"
LAMBDA = "center_weight"
# Test-split metrics drawn against lambda: (metric, panel title).
GEOMETRY_METRICS = (
    ("silhouette", "silhouette"),
    ("intra_mean", "intra-class distance"),
    ("inter_mean", "inter-class distance"),
)


def grouped(frame: pd.DataFrame, parameter: str, column: str) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one run) and count of ``column`` per value."""
    stats = frame.groupby(parameter, sort=True, dropna=False)[column].agg(["mean", "std", "count"])
    return stats.reset_index()


def _x_positions(values: Sequence[Any]) -> tuple[np.ndarray, bool, list[str]]:
    """Numeric positions (log scale when positive and spanning > 10x) or category indices."""
    labels = [str(v) for v in values]
    try:
        numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return np.arange(len(values), dtype=np.float64), False, labels
    log = bool(len(numbers) > 1 and (numbers > 0).all() and numbers.max() / numbers.min() > 10)
    return numbers, log, labels


def accuracy_against_parameters(
    frame: pd.DataFrame, parameters: Sequence[str], width: float
) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(
        figsize=(width, width * 0.4 * math.ceil(len(parameters) / 2)), layout="constrained"
    )
    columns = min(len(parameters), 2)
    axes_grid = figure.subplots(math.ceil(len(parameters) / columns), columns, squeeze=False)
    flat = list(axes_grid.ravel())
    for extra in flat[len(parameters) :]:
        extra.remove()
    for axes, parameter in zip(flat, parameters, strict=False):
        for column, label, marker in (
            ("peak_accuracy", "peak", "^"),
            ("final_accuracy", "last epoch", "o"),
        ):
            stats = grouped(frame, parameter, column)
            x, log, ticks = _x_positions(list(stats[parameter]))
            axes.errorbar(
                x,
                100 * stats["mean"],
                yerr=100 * stats["std"].fillna(0.0),
                marker=marker,
                capsize=3,
                label=label,
            )
            if log:
                axes.set_xscale("log")
            if not np.issubdtype(np.asarray(stats[parameter]).dtype, np.number):
                axes.set_xticks(x, ticks)
        axes.set_xlabel(parameter)
        axes.set_ylabel("test accuracy (%)")
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def geometry_against_lambda(frame: pd.DataFrame, width: float) -> Figure | None:
    from matplotlib.figure import Figure

    present = [
        (metric, title)
        for metric, title in GEOMETRY_METRICS
        if np.isfinite(frame[f"{metric}_last"].astype(float)).any()
    ]
    if not present:
        return None
    figure = Figure(figsize=(width, width * 0.33), layout="constrained")
    axes_list = figure.subplots(1, len(present), squeeze=False)[0]
    for axes, (metric, title) in zip(axes_list, present, strict=True):
        for moment, marker in (("peak", "^"), ("last", "o")):
            stats = grouped(frame, LAMBDA, f"{metric}_{moment}")
            x, log, _ = _x_positions(list(stats[LAMBDA]))
            axes.errorbar(
                x,
                stats["mean"],
                yerr=stats["std"].fillna(0.0),
                marker=marker,
                capsize=3,
                label="peak" if moment == "peak" else "last epoch",
            )
            if log:
                axes.set_xscale("log")
        axes.set_title(f"{title} (test)")
        axes.set_xlabel("lambda (center_weight)")
        axes.grid(alpha=0.3)
    axes_list[0].legend()
    return figure


def lambda_scatter_grid(
    frame: pd.DataFrame, runs: Sequence[RunData], max_points: int, width: float
) -> Figure:
    """One panel per lambda: the last epoch's test features of its first run (lowest seed)."""
    from matplotlib.figure import Figure

    from cl_analyze.viz.runs import load_plot_run
    from cl_analyze.viz.style import class_colors

    by_label = {run.label: run for run in runs}
    order = frame.sort_values(
        [LAMBDA, REPLICATE_PARAMETER] if REPLICATE_PARAMETER in frame else [LAMBDA]
    )
    chosen = order.groupby(LAMBDA, sort=True).head(1)
    panels = len(chosen)
    columns = min(panels, 5)
    rows = math.ceil(panels / columns)
    panel = width / columns
    figure = Figure(figsize=(width, panel * rows + 0.3), layout="constrained")
    axes_grid = figure.subplots(rows, columns, squeeze=False)
    flat = list(axes_grid.ravel())
    for extra in flat[panels:]:
        extra.remove()
    for axes, (_, row) in zip(flat, chosen.iterrows(), strict=False):
        data = by_label[row["run"]]
        loaded = load_plot_run(
            data.run_dir,
            splits=("test", "train"),
            max_points=max_points,
            metrics=None,
            rows=data.rows,
        )
        split = "test" if "test" in loaded.points else loaded.splits[0]
        points = loaded.points[split][-1]
        colors = class_colors(loaded.num_classes)
        axes.scatter(points[:, 0], points[:, 1], s=2, c=colors[loaded.labels[split]], linewidths=0)
        if loaded.centers is not None:
            axes.scatter(
                loaded.centers[-1, :, 0],
                loaded.centers[-1, :, 1],
                s=40,
                c=colors[: loaded.num_classes],
                marker="X",
                edgecolors="black",
                linewidths=0.5,
            )
        (x0, x1), (y0, y1) = loaded.limits
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)
        axes.set_box_aspect(1.0)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(f"lambda {row[LAMBDA]:g}" if _is_number(row[LAMBDA]) else str(row[LAMBDA]))
    return figure


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)

"""Curves over the epochs: accuracy with peaks and lr steps, losses, geometry metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cl_analyze.viz.runs import PlotRun
from cl_analyze.viz.style import (
    FigureStyle,
    figure_style,
    run_colors,
    short_percent,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes


# Metric panels of ``metric_figure``: (metric names drawn in the panel, panel title).
METRIC_PANELS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("intra_mean",), "intra-class distance"),
    (("inter_mean", "inter_min"), "inter-class distance (mean, min)"),
    (("inter_intra_ratio",), "inter / intra ratio"),
    (("silhouette",), "silhouette"),
    (("fisher",), "Fisher ratio"),
    (("feature_norm", "center_norm"), "feature norm (center norm)"),
)


# The y axis of each metric panel (its title names the metric; the label names the unit).
METRIC_UNITS = {
    "intra-class distance": "distance",
    "inter-class distance (mean, min)": "distance",
    "inter / intra ratio": "ratio",
    "silhouette": "silhouette (-1..1)",
    "Fisher ratio": "ratio",
    "feature norm (center norm)": "norm",
}


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


def label_accuracy_panels(full: Axes, zoom: Axes, title: str) -> None:
    """The report's two accuracy panels, in percent: the whole run (0-100%) and a zoom on the
    peak; whole-epoch ticks, titles clear of the frame."""
    full.set_ylim(0, 100)
    full.set_title(title)
    zoom.set_title("near the peak")
    for axes in (full, zoom):
        axes.set_xlabel("epoch")
        axes.set_ylabel("accuracy (%)")
        axes.grid(alpha=0.3)
        # min_n_ticks=1: on a short zoom, one integer tick rather than 0.5-epoch steps.
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.title.set_y(1.02)  # clear of the frame and of a 100% curve


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
                label += f" (peak {short_percent(float(test[peak]))} @ {int(run.epochs[peak])})"
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
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
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
            each.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
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
            # A column-wide figure has narrow panels: a long title breaks before its brackets
            # instead of running off the page.
            axes.set_title(title if style.width >= 5 else title.replace(" (", "\n("))
            axes.set_ylabel(METRIC_UNITS.get(title, title))
            axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
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

"""Figures of the decline, sample by sample: per-class accuracy curves (small multiples), margin
histograms at the peak and the end, and the flipped samples' moves on a scatter."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cl_analyze.metrics.decline_dynamics import DeclineDynamics
from cl_analyze.viz.runs import square_limits, stratified_sample
from cl_analyze.viz.style import (
    FigureStyle,
    class_colors,
    figure_style,
    robust_limits,
    run_colors,
)

# Histogram bins per panel; margins beyond these quantiles are clipped into the end bins.
MARGIN_BINS = 60
MARGIN_RANGE_QUANTILES = (0.005, 0.995)


def class_accuracy_figure(
    runs: Sequence[DeclineDynamics], style: FigureStyle | str = "paper"
) -> Figure:
    """A panel per class: its test accuracy per epoch, a colour per run, the peak dotted."""
    style = figure_style(style) if isinstance(style, str) else style
    names = runs[0].class_names
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    with style.context():
        figure = Figure(
            figsize=(style.width, style.width * 0.32 * rows * 5 / columns), layout="constrained"
        )
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
        colors = run_colors(len(runs))
        for index, name in enumerate(names):
            ax = axes[index]
            for color, d in zip(colors, runs, strict=True):
                if index < d.class_accuracy.shape[1]:
                    ax.plot(d.epochs, 100 * d.class_accuracy[:, index], color=color, label=d.run)
                    ax.axvline(d.epoch_a, color=color, linestyle=":", linewidth=0.7)
            ax.set_title(name)
        for extra in axes[len(names) :]:
            extra.remove()
        figure.supxlabel("epoch")
        figure.supylabel("test accuracy (%)")
        if len(runs) > 1:
            handles, labels = axes[0].get_legend_handles_labels()
            figure.legend(handles, labels, loc="outside upper center", ncols=len(runs))
    return figure


def _margin_range(values: Sequence[np.ndarray]) -> tuple[float, float]:
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if len(finite) == 0:
        return (-1.0, 1.0)
    low, high = np.quantile(finite, MARGIN_RANGE_QUANTILES)
    low = min(float(low), 0.0)
    return (low, max(float(high), low + 1e-6))


def margin_histogram_figure(d: DeclineDynamics, style: FigureStyle | str = "paper") -> Figure:
    """One panel per split: the logit margins at the peak and at the end, overlaid."""
    style = figure_style(style) if isinstance(style, str) else style
    splits = [s for s in ("train", "test") if (s, "a") in d.margin_samples]
    with style.context():
        figure = Figure(figsize=(style.width, style.width * 0.4), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, max(len(splits), 1), squeeze=False).ravel()
        for ax, split in zip(axes, splits, strict=False):
            pair = [d.margin_samples[split, "a"], d.margin_samples[split, "b"]]
            low, high = _margin_range(pair)
            bins = np.linspace(low, high, MARGIN_BINS + 1)
            for values, label, color in zip(
                pair,
                (f"peak (epoch {d.epoch_a})", f"last (epoch {d.epoch_b})"),
                ("tab:blue", "tab:orange"),
                strict=True,
            ):
                ax.hist(
                    np.clip(values, low, high),
                    bins=bins,
                    histtype="step",
                    color=color,
                    label=label,
                    density=True,
                )
            ax.axvline(0.0, color="0.3", linewidth=0.6)
            ax.set_title(f"{d.run}: {split}")
            ax.set_xlabel("logit margin")
        axes[0].set_ylabel("density")
        axes[0].legend(loc="upper left")
    return figure


def flip_scatter_figure(
    d: DeclineDynamics, style: FigureStyle | str = "paper", max_points: int | None = None
) -> Figure | None:
    """The test features at the peak and at the end (faint, by class; ``max_points`` of them),
    the flipped samples marked (x lost, + gained, all of them) and a line from each one's peak
    position to its last. None for features that are not 2-D."""
    style = figure_style(style) if isinstance(style, str) else style
    if d.features_a.shape[1] != 2:
        return None
    labels, lost, gained = d.labels, d.lost_mask, d.gained_mask
    features_a, features_b = d.features_a, d.features_b
    shown = stratified_sample(labels, max_points)
    colors = class_colors(len(d.class_names))
    with style.context():
        figure = Figure(figsize=(style.width, style.width * 0.5), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(1, 2).ravel()
        (x_low, x_high), (y_low, y_high) = square_limits(
            robust_limits(np.concatenate([features_a, features_b]))
        )
        for ax, features, title in (
            (axes[0], features_a, f"peak (epoch {d.epoch_a})"),
            (axes[1], features_b, f"last (epoch {d.epoch_b})"),
        ):
            ax.scatter(
                features[shown, 0],
                features[shown, 1],
                c=colors[labels[shown]],
                s=style.marker_size * 0.5,
                alpha=0.25,
                linewidths=0,
            )
            # Markers in black and grey (the lines carry the class colour), so the legend reads.
            for mask, marker, words, color in (
                (lost, "x", "lost", "black"),
                (gained, "+", "gained", "0.45"),
            ):
                if mask.any():
                    ax.scatter(
                        features[mask, 0],
                        features[mask, 1],
                        c=color,
                        marker=marker,
                        s=style.marker_size * 4,
                        linewidths=0.8,
                        label=f"{words} ({int(mask.sum())})",
                    )
            moved = lost | gained
            segments = np.stack([features_a[moved], features_b[moved]], axis=1)
            for segment, label in zip(segments, labels[moved], strict=True):
                ax.plot(segment[:, 0], segment[:, 1], color=colors[label], linewidth=0.4)
            ax.set_title(title)
            ax.set_xlim(x_low, x_high)
            ax.set_ylim(y_low, y_high)
            ax.set_aspect("equal", adjustable="box")
        if (lost | gained).any():
            axes[0].legend(loc="best")
    return figure


def flipped_digits_figure(
    images: np.ndarray, titles: Sequence[str], style: FigureStyle | str = "paper"
) -> Figure:
    """A grid of thumbnails (K, H, W) uint8, each titled (true, peak and last prediction)."""
    style = figure_style(style) if isinstance(style, str) else style
    columns = min(8, max(len(images), 1))
    rows = max(math.ceil(len(images) / columns), 1)
    with style.context():
        side = style.width / columns
        figure = Figure(figsize=(style.width, rows * side * 1.3), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax in axes:
            ax.set_axis_off()
        for ax, image, title in zip(axes, images, titles, strict=False):
            ax.imshow(image, cmap="gray_r", interpolation="nearest")
            ax.set_title(title, fontsize=max(style.font_size - 3, 5))
    return figure

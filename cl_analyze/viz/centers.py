"""Where classes sit: the learned centers' paths and class-mean distance heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.viz.runs import PlotRun
from cl_analyze.viz.style import (
    FigureStyle,
    class_colors,
    figure_style,
)

if TYPE_CHECKING:
    pass


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

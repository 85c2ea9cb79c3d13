"""Scatter grids of runs x splits, built once so that a new epoch only moves points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import SPLITS
from cl_analyze.viz.regions import RegionLayer, Regions
from cl_analyze.viz.runs import PlotRun
from cl_analyze.viz.style import (
    FigureStyle,
    class_colors,
    figure_style,
    short_percent,
)

if TYPE_CHECKING:
    pass


def panel_title(run: PlotRun, split: str, row: int) -> str:
    """Two lines: run, split and epoch ("peak" at the run's peak); then the split's accuracy and
    silhouette when known."""
    epoch = int(run.epochs[row])
    peak = " · peak" if row == run.peak_row else ""
    details = [f"{split} acc {short_percent(float(run.accuracy_curve(split)[row]))}"]
    silhouette = float(run.metric_curve(split, "silhouette")[row])
    if np.isfinite(silhouette):
        details.append(f"sil {silhouette:.2f}")
    return f"{run.name} · {split} · epoch {epoch}{peak}\n" + " · ".join(details)


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
        strip_height: float = 0.0,
        regions: Sequence[Regions | None] | None = None,
    ) -> None:
        """``strip_height`` (inches) > 0 adds a full-width axes under the grid: ``strip_axes``;
        ``regions``: per run, the classifier whose decision regions shade its panels."""
        if not runs:
            raise CLAnalyzeError("no run to plot: pass at least one run folder")
        self.runs = list(runs)
        self.splits = list(splits)
        self.style = style
        self.regions = list(regions) if regions is not None else [None] * len(self.runs)
        self.region_layers: list[list[RegionLayer | None]] = []
        num_classes = max(run.num_classes for run in self.runs)
        self.colors = class_colors(num_classes)
        nrows, ncols = len(self.runs), len(self.splits)
        legend_rows = math.ceil((num_classes + 1) / min(num_classes + 1, 6))
        with style.context():
            self.figure = Figure(
                figsize=(
                    ncols * style.panel + 0.5,
                    nrows * (style.panel + 0.35) + 0.2 + 0.14 * legend_rows + strip_height,
                ),
                dpi=dpi or style.frame_dpi,
                layout="constrained",
            )
            FigureCanvasAgg(self.figure)
            self.strip_axes: Axes | None = None
            if strip_height > 0:
                grid = self.figure.add_gridspec(
                    nrows + 1, ncols, height_ratios=[style.panel] * nrows + [strip_height]
                )
                self.axes: list[list[Axes]] = [
                    [self.figure.add_subplot(grid[r, c]) for c in range(ncols)]
                    for r in range(nrows)
                ]
                self.strip_axes = self.figure.add_subplot(grid[nrows, :])
            else:
                axes = self.figure.subplots(nrows, ncols, squeeze=False)
                self.axes = [list(row) for row in axes]
            self.points: list[list[PathCollection | None]] = []
            self.centers: list[list[PathCollection | None]] = []
            self.titles: list[list[Text]] = []
            for run, row_axes, shading in zip(self.runs, self.axes, self.regions, strict=True):
                self._build_row(run, row_axes, animated)
                self.region_layers.append(
                    [
                        None
                        if shading is None
                        else RegionLayer(axes, shading, run.limits, self.colors, animated=animated)
                        for axes in row_axes
                    ]
                )
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
                layer = self.region_layers[index][column]
                if layer is not None:
                    layer.show(row)
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
    regions: Sequence[Regions | None] | None = None,
) -> Figure:
    """Runs x splits scatter panels, each run at its row (default: its last); ``regions``
    (per run) shades the classifier's decision regions."""
    style = figure_style(style) if isinstance(style, str) else style
    splits = list(splits or union_splits(runs))
    grid = ScatterGrid(runs, splits, style, regions=regions)
    grid.show(list(rows) if rows is not None else [len(run.epochs) - 1 for run in runs])
    return grid.figure


def union_splits(runs: Sequence[PlotRun]) -> list[str]:
    return [s for s in SPLITS if any(s in run.points for run in runs)]

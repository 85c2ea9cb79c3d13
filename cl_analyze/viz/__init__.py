"""Figures of runs: scatters per epoch, curves, centers and heatmaps (PNG + PDF), and the
side-by-side animation (GIF + MP4). ``plot_runs`` is what `cl-analyze plot` calls; each
``*_figure`` function returns a matplotlib Figure for reuse."""

from cl_analyze.viz.animate import write_animation
from cl_analyze.viz.centers import centers_figure, distance_heatmap_figure
from cl_analyze.viz.curves import accuracy_figure, loss_figure, metric_figure
from cl_analyze.viz.plot import PlotOptions, PlotResult, plot_runs
from cl_analyze.viz.runs import PlotRun, load_plot_run
from cl_analyze.viz.scatter import ScatterGrid, scatter_figure
from cl_analyze.viz.style import FigureStyle, figure_style

__all__ = [
    "FigureStyle",
    "PlotOptions",
    "PlotResult",
    "PlotRun",
    "ScatterGrid",
    "accuracy_figure",
    "centers_figure",
    "distance_heatmap_figure",
    "figure_style",
    "load_plot_run",
    "loss_figure",
    "metric_figure",
    "plot_runs",
    "scatter_figure",
    "write_animation",
]

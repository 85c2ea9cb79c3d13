"""The report's figure sections: accuracy with peak and decline, scatters, animation, centers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cl_analyze.findings import (
    METRIC_WORDS,
    describe_change,
    points,
)
from cl_analyze.report.context import FIGURES, ReportBuild
from cl_analyze.report.document import Animation, Gallery, Heading, Image, Paragraph
from cl_analyze.report.runs import RunData

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    from matplotlib.figure import Figure

    from cl_analyze.viz.regions import Regions
    from cl_analyze.viz.runs import PlotRun
    from cl_analyze.viz.style import FigureStyle


LABEL_ROW = 0.12  # the zoom's peak labels: one row each at the top, in axes fractions
GALLERY_WIDTH = 540  # CSS pixels for a figure as wide as the style: two fit beside each other


def accuracy_section(build: ReportBuild) -> None:
    from cl_analyze.viz.style import run_colors

    runs = build.runs
    style = build.figure_style()
    colors = run_colors(len(runs))
    with style.context():
        figure = peak_decline_figure(runs, colors, style.width, build.options.threshold)
    relative = build.save_figure(figure, "accuracy")
    build.blocks.append(Heading(2, "Accuracy"))
    build.blocks.append(
        Image(
            relative,
            "Test accuracy per epoch (left: all; right: zoom on the top). Star: the peak;"
            " shaded: the last epochs averaged for the decline, with their mean as a bar.",
        )
    )


def peak_decline_figure(
    runs: Sequence[RunData], colors: np.ndarray, width: float, threshold: float
) -> Figure:
    """Test accuracy curves with each run's peak starred and its decline window shaded."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    from cl_analyze.viz.curves import label_accuracy_panels

    figure = Figure(figsize=(width, width * 0.42), layout="constrained")
    full, zoom = figure.subplots(1, 2)
    labels: list[tuple[str, int, np.ndarray]] = []  # (words, peak epoch, colour) per run
    lowest_top = 1.0
    highest = 0.0
    zoom_start = math.inf
    few = len(runs) <= 3  # beyond that, shading and labels per run hide the curves
    for run, color in zip(runs, colors, strict=True):
        result = run.result
        accuracy = 100 * run.history["test_accuracy"]
        for axes in (full, zoom):
            axes.plot(run.epochs, accuracy, color=color, label=run.label, marker=".")
            axes.plot(
                result.peak_epoch,
                100 * result.peak_accuracy,
                marker="*",
                markersize=12,
                color=color,
                markeredgecolor="black",
                linestyle="none",
            )
            if result.last_k:
                tail_epochs = run.epochs[-result.last_k :]
                if few:
                    axes.axvspan(tail_epochs[0], tail_epochs[-1], color=color, alpha=0.12)
                axes.hlines(
                    100 * result.tail_mean,
                    tail_epochs[0],
                    tail_epochs[-1],
                    color=color,
                    linewidth=2.5,
                )
        if few:
            labels.append(
                (
                    f"{100 * result.peak_accuracy:.2f}% @ {result.peak_epoch}"
                    + (
                        f", -{points(result.decline)} pt"
                        if points(result.decline) != "0.00"
                        else ""
                    ),
                    result.peak_epoch,
                    color,
                )
            )
        tail = accuracy[run.epochs >= result.peak_epoch]
        lowest_top = min(lowest_top, float(np.nanmin(tail)) / 100)
        highest = max(highest, result.peak_accuracy)
        near = np.flatnonzero(accuracy >= 100 * result.peak_accuracy - 3)
        zoom_start = min(zoom_start, float(run.epochs[near[0]]))
    span = max(100 * (highest - lowest_top), 0.2)
    # Each peak label on its own row at the top (runs whose peaks coincide keep every label
    # readable); the y range puts the peaks below those rows, at any figure size.
    rows = min(LABEL_ROW * len(labels) + 0.08, 0.7)
    bottom = 100 * lowest_top - 0.6 * span
    zoom.set_ylim(bottom, bottom + (100 * highest + 0.1 * span - bottom) / (1 - rows))
    last = max(float(run.epochs.max()) for run in runs)
    zoom.set_xlim(zoom_start - 0.5, last + 0.5)
    rows_at = blended_transform_factory(zoom.transData, zoom.transAxes)
    for row, (text, epoch, color) in enumerate(labels):
        right_half = epoch > (zoom_start + last) / 2  # then left of the peak: inside the axes
        zoom.annotate(
            text,
            (epoch, 0.97 - LABEL_ROW * row),
            xycoords=rows_at,
            textcoords="offset points",
            xytext=(-4 if right_half else 4, 0),
            ha="right" if right_half else "left",
            va="top",
            color=color,
            fontsize="small",
        )
    full.axhline(100 * threshold, color="grey", linestyle=":", linewidth=1)
    label_accuracy_panels(full, zoom, "test accuracy")
    figure.legend(
        *full.get_legend_handles_labels(), loc="outside lower center", ncol=min(len(runs), 3)
    )
    return figure


def close_figure(figure: Figure) -> None:
    figure.clf()


def figure_sections(build: ReportBuild) -> None:
    """Scatter grid, animation, metric curves and centers, drawn by cl_analyze.viz."""
    from cl_analyze.viz import (
        centers_figure,
        distance_heatmap_figure,
        load_plot_run,
        metric_figure,
        scatter_figure,
    )
    from cl_analyze.viz.regions import load_regions

    options = build.options
    style = build.figure_style()
    loaded = [
        load_plot_run(
            run.run_dir,
            max_points=options.max_points,
            metrics=None if run.metrics.empty else run.metrics,
            name=run.label,
            rows=run.rows,
            projection_name=options.projection,
        )
        for run in build.runs
    ]
    splits = [s for s in ("train", "test") if any(s in run.points for run in loaded)]

    def save(figure: Figure, name: str) -> str:
        return build.save_figure(figure, name.removesuffix(".png"))

    def gallery_image(figure: Figure, name: str, caption: str) -> Image:
        """A gallery image at one scale for the whole page: a figure as wide as the style's
        width shows GALLERY_WIDTH CSS pixels wide, whatever sits beside it."""
        from PIL import Image as PILImage

        relative = save(figure, name)
        with PILImage.open(build.folder / relative) as png:
            pixels = png.width
        scale = GALLERY_WIDTH / (style.width * style.png_dpi)
        return Image(relative, caption, width=round(pixels * scale))

    blocks = build.blocks
    blocks.append(Heading(2, "Features"))
    shown = ["test"] if "test" in splits else splits[:1]
    stages = scatter_stages(build.runs, options.epochs)
    regions = (
        [load_regions(run.run_dir, rows=run.rows) for run in build.runs]
        if options.regions
        else None
    )
    images = []
    for index, (caption, rows) in enumerate(stages):
        figure = scatter_figure(loaded, rows, splits=shown, style=style, regions=regions)
        images.append(gallery_image(figure, f"scatter_{index}.png", caption))
    blocks.append(
        Gallery(
            tuple(images),
            f"{shown[0].capitalize()} features (a run per row; up to {options.max_points} points"
            " per panel); each run at its own such epoch. Crosses: the learned centers.",
        )
    )
    if options.animation:
        _animation_section(build, loaded, splits, style, regions)
    metrics = metric_figure(loaded, style)
    if metrics is None:
        build.omitted.append("Metric curves: no run has metrics.")
    else:
        blocks.append(Heading(2, "Metric curves"))
        blocks.append(
            Image(
                save(metrics, "metrics.png"),
                "Geometry metrics per epoch (test solid, train dashed).",
            )
        )
    blocks.append(Heading(2, "Centers"))
    blocks.append(Paragraph(centers_sentence(build.runs)))
    for index, (run, plot_run) in enumerate(zip(build.runs, loaded, strict=True)):
        images = []
        if plot_run.centers is not None:
            images.append(
                gallery_image(
                    centers_figure(plot_run, style),
                    f"centers_{index}.png",
                    "paths of the learned centers (o start, X end)",
                )
            )
        heatmap = distance_heatmap_figure(
            plot_run.distances, plot_run.class_names, style, title=run.label
        )
        images.append(gallery_image(heatmap, f"distances_{index}.png", "class-mean distances"))
        blocks.append(
            Gallery(
                tuple(images),
                f"{run.label}: distances between the class means of the test features at the"
                " peak and at the last epoch"
                + ("; the learned centers' paths." if plot_run.centers is not None else "."),
            )
        )


def _animation_section(
    build: ReportBuild,
    loaded: Sequence[PlotRun],
    splits: Sequence[str],
    style: FigureStyle,
    regions: Sequence[Regions | None] | None = None,
) -> None:
    from cl_analyze.report.scrubber import ScrubberFrames, scrubber_block
    from cl_analyze.viz.animate import frame_epochs, write_animation

    stem, _ = build.figure_path("animation")
    epochs = frame_epochs(loaded)
    if build.reporter is not None:
        # Not passed on: write_animation would name the temporary folder in its log lines.
        build.reporter.log(f"drawing the animation ({len(epochs)} frames)")
    frames = ScrubberFrames(build.folder, FIGURES, epochs)
    written = write_animation(
        loaded,
        stem,
        splits=splits,
        style=style,
        formats=("gif", "mp4"),
        strip=build.options.strip,
        frame_sink=frames,
        regions=regions,
    )
    names = {path.suffix: f"{FIGURES}/{path.name}" for path in written}
    build.blocks.append(Heading(2, "Animation"))
    build.blocks.append(
        scrubber_block(
            loaded,
            epochs,
            frames,
            "Step through the epochs with the slider or the arrow keys: the runs side by side"
            " (a run that ended earlier holds its last epoch)"
            + (
                ", their test accuracy below with a cursor at the epoch shown, each peak starred"
                " and the drop since it shaded."
                if build.options.strip
                else "."
            ),
        )
    )
    build.blocks.append(
        Animation(
            names.get(".gif"),
            names.get(".mp4"),
            "The same frames as a looping GIF (for slides).",
        )
    )


def scatter_stages(
    runs: Sequence[RunData], epochs: Sequence[int | str] | None
) -> list[tuple[str, list[int]]]:
    """(caption, row of each run) for each scatter figure.

    Default: the start, the first epoch reaching the threshold (a run that never does: its peak),
    the peak and the last epoch, each run at its own such epoch; a stage whose rows repeat the
    previous one is merged into it.
    """
    if epochs is not None:
        return [(_spec_words(spec), [_row_of(run, spec) for run in runs]) for spec in epochs]
    threshold = f"{100 * runs[0].result.threshold:g}%"
    candidates: list[tuple[str, list[int]]] = [("start", [0 for _ in runs])]
    if any(run.result.epoch_reaching_threshold is not None for run in runs):
        rows = [
            _row_of(
                run,
                run.result.peak_epoch
                if run.result.epoch_reaching_threshold is None
                else run.result.epoch_reaching_threshold,
            )
            for run in runs
        ]
        candidates.append((f"first at {threshold}", rows))
    candidates.append(("peak", [_row_of(run, "peak") for run in runs]))
    candidates.append(("last", [len(run.epochs) - 1 for run in runs]))
    stages: list[tuple[str, list[int]]] = []
    for caption, rows in candidates:
        if stages and stages[-1][1] == rows:
            stages[-1] = (f"{stages[-1][0]} = {caption}", rows)
            continue
        stages.append((caption, rows))
    return stages


def _row_of(run: RunData, spec: int | str) -> int:
    if spec == "first":
        return 0
    if spec == "last":
        return len(run.epochs) - 1
    epoch = run.result.peak_epoch if spec == "peak" else int(spec)
    return int(np.flatnonzero(run.epochs == epoch)[0])


def _spec_words(spec: int | str) -> str:
    if isinstance(spec, int):
        return f"epoch {spec}"
    return {"first": "start", "peak": "peak", "last": "last"}[spec]


def centers_sentence(runs: Sequence[RunData]) -> str:
    """What the learned centers did between each run's peak and last epoch, from the metrics."""
    parts = []
    for run in runs:
        if not run.has_centers:
            parts.append(f"{run.label} learns no centers (softmax only)")
            continue
        at_peak, at_last = run.at_peak, run.at_last
        changes = [
            describe_change(METRIC_WORDS[name], at_peak[name], at_last[name])
            for name in ("center_norm", "center_min_distance")
            if name in at_peak and name in at_last
        ]
        detail = " and ".join(changes) if changes else "no center metrics recorded"
        parts.append(
            f"{run.label}, from epoch {run.result.peak_epoch} to {run.result.final_epoch}: {detail}"
        )
    return "; ".join(parts) + "."

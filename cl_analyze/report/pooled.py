"""Seeds pooled in the report: groups of runs that differ only in their seed, as words, a table
and their mean accuracy curves with a 95% band."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cl_analyze.findings import (
    SIGNIFICANCE,
    Interval,
    SeedGroup,
    SeedRun,
    group_comparisons,
    group_findings,
    group_replicates,
    p_value_text,
    percent,
    points,
    pool_seeds,
)
from cl_analyze.report.context import ReportBuild
from cl_analyze.report.document import Heading, Image, Paragraph, Table
from cl_analyze.report.runs import RunData

if TYPE_CHECKING:  # imported where used: matplotlib is slow to load
    from matplotlib.figure import Figure


def seed_groups(runs: Sequence[RunData], *, last_k: int, threshold: float) -> list[SeedGroup]:
    """Every group of two or more non-degenerate runs that differ only in their seed."""
    by_name = {run.label: run for run in runs}
    groups = []
    for label, members in group_replicates([run.seed_run for run in runs]):
        kept: list[SeedRun] = []
        left_out = []
        for member in members:
            twin = next(
                (k for k in kept if k.config.get("seed") == member.config.get("seed")), None
            )
            if by_name[member.name].degenerate:
                left_out.append(f"{member.name} (see the warnings above)")
            elif twin is not None:  # the same run twice, or a rerun: not an independent seed
                left_out.append(f"{member.name} (the same seed as {twin.name})")
            else:
                kept.append(member)
        if len(kept) >= 2:
            groups.append(
                pool_seeds(label, kept, last_k=last_k, threshold=threshold, left_out=left_out)
            )
    return groups


def _epochs(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _interval_cell(
    interval: Interval | None, *, accuracy: bool = False, decline: bool = False
) -> str:
    """'98.90% [98.70%, 99.10%]' (accuracy), '0.40 [0.10, 0.70]' (points), '31.3 [25.1, 37.6]'
    (epochs); 'never' when no seed reaches it; a single value has no interval."""
    if interval is None:
        return "never"
    show = percent if accuracy else points if decline else _epochs
    if not math.isfinite(interval.low):
        return f"{show(interval.mean)} (one seed)"
    return f"{show(interval.mean)} [{show(interval.low)}, {show(interval.high)}]"


def pooled_table(groups: Sequence[SeedGroup]) -> Table:
    threshold = f"{100 * groups[0].pooled.threshold:g}%"
    rows = []
    for group in groups:
        pooled = group.pooled
        test = "" if pooled.p_value is None else f" ({p_value_text(pooled.p_value)})"
        reached = _interval_cell(group.epochs_to_threshold)
        if group.never_reached and group.epochs_to_threshold is not None:
            reached += f"; {group.never_reached} never"
        rows.append(
            (
                group.label,
                ", ".join(str(seed) for seed in group.seeds),
                f"{int(group.epochs[0])}..{int(group.epochs[-1])}",
                _interval_cell(group.peak_accuracy, accuracy=True),
                _interval_cell(group.peak_epoch),
                _interval_cell(group.decline, decline=True),
                reached,
                pooled.verdict + test,
            )
        )
    columns = (
        "group",
        "seeds",
        "epochs",
        "peak accuracy [95%]",
        "peak epoch [95%]",
        "decline, points [95%]",
        f"epoch reaching {threshold} [95%]",
        "mean curve: decline test",
    )
    return Table(columns, tuple(rows))


def pooled_section(build: ReportBuild) -> None:
    """Words, table and band figure for the seed groups; nothing without a group."""
    groups = build.groups
    if not groups:
        return
    blocks = build.blocks
    blocks.append(Heading(2, "Seeds pooled"))
    blocks.append(
        Paragraph(
            "Runs whose configurations differ only in their seed are pooled over the epochs they"
            " all recorded: each number is the mean over the seeds with its 95% t-interval"
            " (Student's t, S - 1 degrees of freedom), and the decline test runs on the mean"
            f" curve (a real decline at p < {SIGNIFICANCE:g}). Groups are compared by the 95%"
            " Welch interval of the difference of their means: a difference is larger than the"
            " seed-to-seed spread when that interval excludes 0."
        )
    )
    for group in groups:
        blocks.append(Paragraph(" ".join(group_findings(group))))
    blocks.append(pooled_table(groups))
    comparisons = group_comparisons(groups)
    if comparisons:
        blocks.append(Heading(3, "Groups compared"))
        blocks.extend(Paragraph(sentence) for sentence in comparisons)
    if not build.options.figures:
        return
    from cl_analyze.viz.style import run_colors

    style = build.figure_style()
    with style.context():
        figure = pooled_accuracy_figure(groups, run_colors(len(groups)), style.width)
    relative = build.save_figure(figure, "accuracy_seeds")
    blocks.append(
        Image(
            relative,
            "Mean test accuracy over the seeds of each group, with its 95% band (t-interval of"
            " the mean at each epoch); star: the mean curve's peak (right: zoom on the top).",
        )
    )


def pooled_accuracy_figure(groups: Sequence[SeedGroup], colors: np.ndarray, width: float) -> Figure:
    from matplotlib.figure import Figure

    from cl_analyze.viz.curves import label_accuracy_panels

    figure = Figure(figsize=(width, width * 0.42), layout="constrained")
    full, zoom = figure.subplots(1, 2)
    start = math.inf
    for group, color in zip(groups, colors, strict=True):
        label = f"{group.label} ({len(group.runs)} seeds)"
        for axes in (full, zoom):
            axes.fill_between(
                group.epochs,
                100 * group.band_low,
                100 * group.band_high,
                color=color,
                alpha=0.25,
                linewidth=0,
            )
            axes.plot(group.epochs, 100 * group.mean_curve, color=color, label=label)
            axes.plot(
                group.pooled.peak_epoch,
                100 * group.pooled.peak_accuracy,
                marker="*",
                markersize=12,
                color=color,
                markeredgecolor="black",
                linestyle="none",
            )
        near = np.flatnonzero(group.mean_curve >= group.pooled.peak_accuracy - 0.03)
        # At least the last five epochs: a curve still rising steeply is near its peak only there.
        last_five = float(group.epochs[max(len(group.epochs) - 5, 0)])
        start = min(start, float(group.epochs[near[0]]), last_five)
    shown = [group.epochs >= start for group in groups]
    bottom = min(float(np.nanmin(g.band_low[s])) for g, s in zip(groups, shown, strict=True))
    top = max(float(np.nanmax(g.band_high[s])) for g, s in zip(groups, shown, strict=True))
    span = max(100 * (top - bottom), 0.2)
    zoom.set_ylim(100 * bottom - 0.1 * span, min(100 * top + 0.1 * span, 100.0))
    zoom.set_xlim(start - 0.5, max(float(group.epochs[-1]) for group in groups) + 0.5)
    label_accuracy_panels(full, zoom, "mean test accuracy over seeds")
    figure.legend(
        *full.get_legend_handles_labels(), loc="outside lower center", ncol=min(len(groups), 3)
    )
    return figure

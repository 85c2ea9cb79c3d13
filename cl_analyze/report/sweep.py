"""The sweep part of `cl-analyze report`: a folder holding sweep.json, reported as a whole.

Adds: final and peak test accuracy against each swept parameter (mean and spread over the runs
sharing a value: the seeds, and the other swept parameters when there are several), silhouette /
intra / inter distances against lambda (``center_weight``), a row of last-epoch scatters with one
panel per lambda (the paper's figure), and the spread of the peak epoch over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import SIGNIFICANCE, VERDICT_REAL, metrics_at, percent, points
from cl_analyze.report.context import ReportBuild
from cl_analyze.report.document import Heading, Image, Paragraph, Table
from cl_analyze.report.figures import accuracy_section
from cl_analyze.report.pooled import pooled_section
from cl_analyze.report.runs import RunData
from cl_analyze.store import store_path
from cl_analyze.sweep.state import SweepInfo, load_sweep

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


def sweep_run_dirs(sweep_dir: Path) -> tuple[SweepInfo, list[Path], list[str]]:
    """The sweep, the run folders that hold a store (in sweep order), and notes on the others."""
    info = load_sweep(sweep_dir)
    folders, notes = [], []
    for run in info.runs:
        if store_path(run.folder).is_file():
            folders.append(run.folder)
        else:
            notes.append(f"{run.name}: {run.state}, no store yet (left out)")
    if not folders:
        raise CLAnalyzeError(
            f"no run of the sweep {sweep_dir} has a store yet: report it once a run has started"
        )
    return info, folders, notes


def sweep_frame(info: SweepInfo, runs: Sequence[RunData]) -> pd.DataFrame:
    """One row per run: its swept values, state, accuracy numbers and metrics at peak and last."""
    states = {run.folder.resolve(): run for run in info.runs}
    rows = []
    for data in runs:
        sweep_run = states[data.run_dir.resolve()]
        result = data.result
        row: dict[str, Any] = {
            "run": data.label,
            **{name: sweep_run.values.get(name) for name in info.parameters},
            "state": sweep_run.state,
            "peak_epoch": result.peak_epoch,
            "peak_accuracy": result.peak_accuracy,
            "final_epoch": result.final_epoch,
            "final_accuracy": result.final_accuracy,
            "decline": result.decline,
            "p_value": result.p_value,
            "verdict": result.verdict,
            "degenerate": data.degenerate,
        }
        for moment, epoch in (("peak", result.peak_epoch), ("last", result.final_epoch)):
            values = metrics_at(data.metrics, epoch)
            for metric, _ in GEOMETRY_METRICS:
                row[f"{metric}_{moment}"] = values.get(metric, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


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


def peak_spread_table(
    frame: pd.DataFrame, parameters: Sequence[str]
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Per combination of the non-seed parameters: the peak epochs over seeds and their spread."""
    keys = [p for p in parameters if p != REPLICATE_PARAMETER]
    groups = frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]
    rows = []
    for key, group in groups:
        values = key if isinstance(key, tuple) else (key,)
        epochs = group["peak_epoch"].to_numpy()
        final = group["final_accuracy"].to_numpy()
        spread = f"{np.std(epochs, ddof=1):.1f}" if len(epochs) > 1 else "-"
        rows.append(
            (
                *(str(v) for v in values),
                str(len(group)),
                ", ".join(str(int(e)) for e in epochs),
                f"{epochs.mean():.1f}",
                spread,
                f"{int(epochs.min())}..{int(epochs.max())}",
                f"{100 * final.mean():.2f}%"
                + (f" ± {100 * np.std(final, ddof=1):.2f}" if len(final) > 1 else ""),
            )
        )
    columns = (
        *keys,
        "runs",
        "peak epochs",
        "mean",
        "std",
        "range",
        "last accuracy (mean ± std)",
    )
    return tuple(columns), tuple(rows)


def sweep_findings(frame: pd.DataFrame, parameters: Sequence[str]) -> list[str]:
    """Sentences: the best value of each swept parameter, and how many runs really decline.
    Degenerate runs (at chance, diverged, collapsed) are left out of both."""
    sentences = []
    usable = frame[~frame["degenerate"]] if "degenerate" in frame else frame
    left_out = len(frame) - len(usable)
    for parameter in parameters:
        if parameter == REPLICATE_PARAMETER:
            continue
        stats = grouped(usable, parameter, "final_accuracy")
        if len(stats) < 2:
            continue
        best = stats.loc[stats["mean"].idxmax()]
        worst = stats.loc[stats["mean"].idxmin()]
        sentences.append(
            f"Over {parameter}, the last-epoch test accuracy is highest at {best[parameter]}"
            f" ({percent(best['mean'])} mean over {int(best['count'])} run(s)) and lowest at"
            f" {worst[parameter]} ({percent(worst['mean'])})."
        )
    real = int((usable["verdict"] == VERDICT_REAL).sum())
    sentences.append(
        f"{real} of {len(usable)} runs show a real decline after their peak"
        f" (decline test, p < {SIGNIFICANCE:g})."
    )
    if left_out:
        sentences.append(f"{left_out} run(s) left out of these sentences (see the warnings above).")
    return sentences


def assemble_sweep(build: ReportBuild, info: SweepInfo, notes: Sequence[str]) -> None:
    """The blocks of a sweep report."""
    from cl_analyze.viz.style import figure_style

    blocks = build.blocks
    style = figure_style(build.options.style)
    frame = sweep_frame(info, build.runs)
    parameters = list(info.parameters)
    grid_words = " x ".join(
        f"{name} in {{{', '.join(str(v) for v in values)}}}" for name, values in info.grid.items()
    )
    states = pd.Series([run.state for run in info.runs]).value_counts()
    blocks.append(Heading(1, f"Sweep report: {info.path.resolve().name}"))
    blocks.append(
        Paragraph(
            f"{len(info.runs)} runs over {grid_words}; states: "
            + ", ".join(f"{state} {count}" for state, count in states.items())
            + "."
        )
    )
    for note in notes:
        blocks.append(Paragraph(note, note=True))
    for run in build.runs:
        for warning in run.warnings:
            blocks.append(
                Paragraph(f"Warning: {warning.text} It is left out of the comparisons.", note=True)
            )
    for run in build.runs:
        if run.training:
            blocks.append(
                Paragraph(
                    f"{run.label} is still training: reported up to epoch"
                    f" {run.result.final_epoch}.",
                    note=True,
                )
            )
    blocks.append(Heading(2, "Findings"))
    blocks.extend(Paragraph(sentence) for sentence in sweep_findings(frame, parameters))
    columns = (
        "run",
        *parameters,
        "state",
        "peak epoch",
        "peak",
        "last",
        "decline (points)",
        "decline test",
        "verdict",
    )
    rows = tuple(
        (
            str(row["run"]),
            *(str(row[p]) for p in parameters),
            str(row["state"]),
            str(row["peak_epoch"]),
            percent(row["peak_accuracy"]),
            percent(row["final_accuracy"]),
            points(row["decline"]),
            ""
            if row["p_value"] is None or pd.isna(row["p_value"])
            else f"p = {row['p_value']:.3f}",
            str(row["verdict"]) + (" (warning)" if row["degenerate"] else ""),
        )
        for _, row in frame.iterrows()
    )
    blocks.append(Table(columns, rows))

    def save(figure: Figure, name: str) -> str:
        path, relative = build.figure_path(name)
        with style.context():
            figure.savefig(path, dpi=style.png_dpi)
        figure.clf()
        return relative

    blocks.append(Heading(2, "Peak epoch over seeds"))
    spread_columns, spread_rows = peak_spread_table(frame, parameters)
    blocks.append(Table(spread_columns, spread_rows))
    pooled_section(build)
    if not build.options.figures:
        build.omitted.append("Figures: skipped (--no-figures).")
        return
    swept = [p for p in parameters if p != REPLICATE_PARAMETER] or parameters
    blocks.append(Heading(2, "Accuracy against the swept parameters"))
    with style.context():
        figure = accuracy_against_parameters(frame, swept, style.width)
    blocks.append(
        Image(
            save(figure, "sweep_accuracy.png"),
            "Peak and last-epoch test accuracy per value: mean over the runs sharing it (seeds,"
            " and the other swept parameters), bars one standard deviation.",
        )
    )
    if LAMBDA in parameters:
        blocks.append(Heading(2, "Geometry against lambda"))
        with style.context():
            geometry = geometry_against_lambda(frame, style.width)
        if geometry is None:
            build.omitted.append("Geometry against lambda: no metrics (cl_analyze.analysis).")
        else:
            blocks.append(
                Image(
                    save(geometry, "sweep_geometry.png"),
                    "Test-split geometry at the peak and the last epoch against lambda (mean ±"
                    " std over seeds).",
                )
            )
        blocks.append(Heading(2, "Last-epoch features per lambda"))
        with style.context():
            scatter = lambda_scatter_grid(frame, build.runs, build.options.max_points, style.width)
        blocks.append(
            Image(
                save(scatter, "sweep_scatter.png"),
                "Last-epoch test features, one panel per lambda (its lowest seed);"
                " crosses: the centers.",
            )
        )
    accuracy_section(build)

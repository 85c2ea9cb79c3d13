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
from cl_analyze.report.sweep_figures import (
    GEOMETRY_METRICS,
    LAMBDA,
    REPLICATE_PARAMETER,
    accuracy_against_parameters,
    geometry_against_lambda,
    grouped,
    lambda_scatter_grid,
)
from cl_analyze.store import store_path
from cl_analyze.sweep.state import SweepInfo, load_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    blocks = build.blocks
    style = build.figure_style()
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
        return build.save_figure(figure, name.removesuffix(".png"))

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

"""The report's sections on runs in words and tables: findings, setup, metrics."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_analyze.config import command_line_of
from cl_analyze.findings import (
    METRIC_WORDS,
    MIN_EPOCHS_AFTER_PEAK,
    SIGNIFICANCE,
    compare_runs,
    metrics_at,
    p_value_text,
    percent,
    points,
    run_findings,
)
from cl_analyze.report.context import ReportBuild
from cl_analyze.report.decline import decline_section
from cl_analyze.report.document import Heading, Paragraph, Table
from cl_analyze.report.figures import accuracy_section, figure_sections
from cl_analyze.report.pooled import pooled_section
from cl_analyze.report.runs import RunData

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    pass


# Config keys shown first in the setup table; the rest follow alphabetically.
LEADING_CONFIG_KEYS = ("loss", "dataset", "epochs", "lr", "center_weight", "center_lr", "seed")


def assemble_runs(build: ReportBuild) -> None:
    runs = build.runs
    blocks = build.blocks
    blocks.append(Heading(1, "Report: " + " vs ".join(run.label for run in runs)))
    warnings_section(build)
    for run in runs:
        if run.training:
            blocks.append(
                Paragraph(
                    f"{run.label} is still training: reported up to its last completed epoch,"
                    f" {run.result.final_epoch}. Rebuild the report when it finishes.",
                    note=True,
                )
            )
    if len({run.dataset for run in runs}) > 1:
        blocks.append(
            Paragraph("These runs use different datasets: compare them with care.", note=True)
        )
    findings_section(build)
    decline_section(build)
    pooled_section(build)
    setup_section(build)
    if build.options.figures:
        accuracy_section(build)
        figure_sections(build)
    else:
        build.omitted.append("Figures and animation: skipped (--no-figures).")
    metrics_section(build)


def warnings_section(build: ReportBuild) -> None:
    """Degenerate runs, at the top of the page: chance level, diverged, collapsed."""
    for run in build.runs:
        for warning in run.warnings:
            build.blocks.append(
                Paragraph(f"Warning: {warning.text} It is left out of the comparisons.", note=True)
            )


def findings_section(build: ReportBuild) -> None:
    blocks = build.blocks
    blocks.append(Heading(2, "Findings"))
    for run in build.runs:
        if len(build.runs) > 1:
            blocks.append(Heading(3, run.label))
        blocks.append(Paragraph(" ".join(run_findings(run.result, run.at_peak, run.at_last))))
    comparison = compare_runs(
        [run.numbers for run in build.runs if not run.degenerate],
        left_out=[run.label for run in build.runs if run.degenerate],
    )
    if comparison:
        blocks.append(Heading(3, "Comparison"))
        blocks.extend(Paragraph(sentence) for sentence in comparison)
    blocks.append(Paragraph(definitions(build.options.last_k)))
    blocks.append(summary_table(build.runs))


def definitions(last_k: int) -> str:
    return (
        "Definitions (docs/report.md): the peak is the epoch of maximum test accuracy (earliest"
        f" of ties); the decline is the peak minus the mean of the last {last_k} epochs after"
        " it, and a decline below one test sample is none. The decline test compares it with"
        " simulated curves that have no decline, the same length of plateau and the run's own"
        " epoch-to-epoch noise (AR(1), fitted to the epochs after the peak): p is the share of"
        f" them that decline at least as much, and p < {SIGNIFICANCE:g} is a real decline. On"
        " curves with no decline it said real in at most 5% of cases; it needs at least"
        f" {MIN_EPOCHS_AFTER_PEAK} epochs after the peak."
    )


def summary_table(runs: Sequence[RunData]) -> Table:
    rows = []
    for run in runs:
        result = run.result
        p_value = "" if result.p_value is None else p_value_text(result.p_value)
        rows.append(
            (
                run.label,
                run.dataset,
                str(run.config.get("loss", "")),
                str(result.peak_epoch),
                percent(result.peak_accuracy),
                f"{result.final_epoch}",
                percent(result.final_accuracy),
                points(result.decline),
                p_value,
                result.verdict + (" (warning)" if run.degenerate else ""),
                "never"
                if result.epoch_reaching_threshold is None
                else str(result.epoch_reaching_threshold),
            )
        )
    threshold = f"{100 * runs[0].result.threshold:g}%"
    columns = (
        "run",
        "dataset",
        "loss",
        "peak epoch",
        "peak accuracy",
        "last epoch",
        "last accuracy",
        "decline (points)",
        "decline test",
        "verdict",
        f"epoch reaching {threshold}",
    )
    return Table(columns, tuple(rows))


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def setup_section(build: ReportBuild) -> None:
    runs = build.runs
    blocks = build.blocks
    blocks.append(Heading(2, "Setup"))
    columns = ("", *(run.label for run in runs))

    def row(name: str, value: Callable[[RunData], Any]) -> tuple[str, ...]:
        return (name, *(format_value(value(run)) for run in runs))

    def wall_time(run: RunData) -> str:
        elapsed = run.history.get("elapsed_s")
        if elapsed is None or not np.isfinite(elapsed).any():
            return "-"
        seconds = float(np.nanmax(elapsed))
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"

    setup_rows = [
        row("dataset", lambda run: run.dataset),
        row("classes", lambda run: ", ".join(run.class_names)),
        row("feature dimension", lambda run: run.feat_dim),
        row("samples", lambda run: ", ".join(f"{k} {v}" for k, v in run.split_sizes.items())),
        row("epochs recorded", lambda run: f"{int(run.epochs.min())}..{int(run.epochs.max())}"),
        row("status", lambda run: "still training" if run.training else "finished"),
        row("wall time", wall_time),
        row("device", lambda run: run.attrs.get("device")),
        row("hardware", lambda run: run.attrs.get("hardware")),
        row("cl-analyze version", lambda run: run.attrs.get("package_version")),
        row("torch version", lambda run: run.attrs.get("torch_version")),
        row("created", lambda run: run.attrs.get("created")),
        row("folder", lambda run: str(run.run_dir)),
        row("rerun with", lambda run: command_line_of(run.config)),
    ]
    blocks.append(Table(columns, tuple(setup_rows)))
    keys = sorted({key for run in runs for key in run.config})
    ordered = [k for k in LEADING_CONFIG_KEYS if k in keys] + [
        k for k in keys if k not in LEADING_CONFIG_KEYS
    ]
    blocks.append(Heading(3, "Configuration"))
    config_rows = []
    for key in ordered:
        values = [format_value(run.config.get(key)) for run in runs]
        differs = len(runs) > 1 and len(set(values)) > 1
        config_rows.append((key + (" (differs)" if differs else ""), *values))
    blocks.append(Table(columns, tuple(config_rows)))


def metrics_section(build: ReportBuild) -> None:
    blocks = build.blocks
    for run in build.runs:
        if run.metrics_problem is not None:
            build.omitted.append(f"Metrics of {run.label}: {run.metrics_problem}.")
    with_metrics = [run for run in build.runs if not run.metrics.empty]
    if not with_metrics:
        return
    blocks.append(Heading(2, "Metrics at the peak and at the last epoch"))
    for run in with_metrics:
        blocks.append(Heading(3, run.label))
        blocks.append(metrics_table(run))


def metrics_table(run: RunData) -> Table:
    """Whole-split metrics of the test (and train) split at the peak and the last epoch."""
    result = run.result
    rows = []
    for split in ("test", "train"):
        at_peak = metrics_at(run.metrics, result.peak_epoch, split)
        at_last = metrics_at(run.metrics, result.final_epoch, split)
        names = [n for n in METRIC_WORDS if n in at_peak] + sorted(
            n for n in at_peak if n not in METRIC_WORDS
        )
        for name in names:
            before, after = at_peak[name], at_last.get(name, math.nan)
            change = (
                f"{(after - before) / abs(before):+.1%}"
                if before and math.isfinite(before) and math.isfinite(after)
                else ""
            )
            change = "0.0%" if change in ("+0.0%", "-0.0%") else change  # never a signed zero
            rows.append((split, name, f"{before:.4g}", f"{after:.4g}", change))
    columns = (
        "split",
        "metric",
        f"peak (epoch {result.peak_epoch})",
        f"last (epoch {result.final_epoch})",
        "change",
    )
    return Table(columns, tuple(rows))

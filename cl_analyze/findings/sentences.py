"""The findings of single runs in words, and runs compared, written from the numbers.

The text is plain (not escaped): the report escapes it for HTML and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from cl_analyze.findings.decline import (
    MIN_EPOCHS_AFTER_PEAK,
    VERDICT_NO_DECLINE,
    VERDICT_REAL,
    VERDICT_TOO_FEW,
    PeakDecline,
)
from cl_analyze.findings.numbers import number, p_value_text, percent, points, share_text

# Relative changes smaller than this are reported as "stays near".
STEADY_RELATIVE_CHANGE = 0.02

# Metric name -> how a sentence names it. Order is the order of the findings.
METRIC_WORDS: dict[str, str] = {
    "intra_mean": "the mean intra-class distance",
    "inter_min": "the smallest distance between class means",
    "inter_intra_ratio": "the inter/intra ratio",
    "silhouette": "the silhouette",
    "feature_norm": "the mean feature norm",
    "center_norm": "the mean center norm",
    "center_min_distance": "the smallest center-to-center distance",
}


def metrics_at(frame: pd.DataFrame, epoch: int, split: str = "test") -> dict[str, float]:
    """Whole-split metric values (class '') of one epoch from a tidy metrics frame."""
    if frame.empty:
        return {}
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == split) & (frame["class"] == "")]
    pairs = zip(rows["metric"], rows["value"], strict=True)
    return {str(name): float(value) for name, value in pairs}


def describe_change(words: str, before: float, after: float) -> str:
    """'the silhouette rises from 0.41 to 0.52 (+27%)', or 'stays near' for small changes."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return f"{words} goes from {number(before)} to {number(after)}"
    scale = max(abs(before), abs(after))
    relative = (after - before) / abs(before) if before != 0 else math.inf
    if scale == 0 or abs(after - before) <= STEADY_RELATIVE_CHANGE * scale:
        return f"{words} stays near {number(after)}"
    verb = "rises" if after > before else "falls"
    shown = f"{relative:+.0%}"
    if shown in ("+100%", "-100%") and abs(relative) != 1:
        shown = f"{relative:+.1%}"  # -99.8% must not read as a drop to zero
    change = f" ({shown})" if math.isfinite(relative) else ""
    return f"{words} {verb} from {number(before)} to {number(after)}{change}"


def test_sentence(result: PeakDecline) -> str:
    """The decline test's outcome: its p-value, what it means, the noise, the verdict."""
    test = result.test
    assert test is not None
    noise = (
        f"{points(test.noise)} points of epoch-to-epoch noise, autocorrelation"
        f" {test.autocorrelation:.2f}"
    )
    text = (
        f"The decline test gives {p_value_text(test.p_value)}: curves with no true decline"
        f" and this noise ({noise}) decline this much after their highest epoch in"
        f" {share_text(test.p_value)}"
    )
    if result.verdict == VERDICT_REAL:
        return (
            text + f", so this is a real decline: {points(test.excess)} points beyond what"
            f" picking the highest of noisy epochs explains (90% interval"
            f" {points(test.excess_low)} to {points(test.excess_high)})."
        )
    return text + ", so the decline is within noise."


def decline_sentence(result: PeakDecline) -> str:
    """The accuracy finding of one run, stated with its numbers and the decline test."""
    text = f"Test accuracy peaks at {percent(result.peak_accuracy)} at epoch {result.peak_epoch}"
    if result.epochs_after_peak == 0:
        return text + ", the last epoch recorded: no decline (yet)."
    tail = (
        f"the mean of the last {result.last_k} epochs"
        if result.last_k > 1
        else f"epoch {result.final_epoch}"
    )
    if result.verdict == VERDICT_NO_DECLINE:
        if result.decline <= 0:
            return text + f" and stays there through epoch {result.final_epoch}: no decline."
        return (
            text + f"; {tail} is less than one test sample ({points(result.resolution)} points)"
            f" below it, through epoch {result.final_epoch}: no decline."
        )
    text += (
        f" and declines by {points(result.decline)} points to {percent(result.tail_mean)}"
        f" ({tail}); at the last epoch, {result.final_epoch}, it is"
        f" {percent(result.final_accuracy)}."
    )
    if result.verdict == VERDICT_TOO_FEW:
        return text + (
            f" Only {result.epochs_after_peak} epoch(s) follow the peak: too few to test"
            f" (the decline test needs {MIN_EPOCHS_AFTER_PEAK})."
        )
    return text + " " + test_sentence(result)


def threshold_sentence(result: PeakDecline) -> str:
    if result.epoch_reaching_threshold is None:
        return f"It never reaches {100 * result.threshold:g}%."
    epoch = result.epoch_reaching_threshold
    return f"It first reaches {100 * result.threshold:g}% at epoch {epoch}."


def geometry_sentence(
    result: PeakDecline, at_peak: Mapping[str, float], at_last: Mapping[str, float]
) -> str | None:
    """How the test features' geometry moves between the peak and the last epoch."""
    if result.peak_epoch == result.final_epoch:
        return None
    changes = [
        describe_change(words, at_peak[name], at_last[name])
        for name, words in METRIC_WORDS.items()
        if name in at_peak and name in at_last
    ]
    if not changes:
        return None
    listed = changes[0] if len(changes) == 1 else ", ".join(changes[:-1]) + " and " + changes[-1]
    return (
        f"Over the same epochs ({result.peak_epoch} to {result.final_epoch}), on the test split,"
        f" {listed}."
    )


def run_findings(
    result: PeakDecline, at_peak: Mapping[str, float], at_last: Mapping[str, float]
) -> list[str]:
    """The findings paragraph of one run, as sentences."""
    sentences = [decline_sentence(result), threshold_sentence(result)]
    geometry = geometry_sentence(result, at_peak, at_last)
    if geometry is not None:
        sentences.append(geometry)
    return sentences


@dataclass(frozen=True)
class RunNumbers:
    """What the comparison of runs needs from each run."""

    name: str
    result: PeakDecline
    at_peak: Mapping[str, float]
    at_last: Mapping[str, float]


# (metric, better is larger, what the better run is, what the metric is) to compare runs.
COMPARISONS: tuple[tuple[str, bool, str, str], ...] = (
    ("intra_mean", False, "more compact", "mean intra-class distance"),
    ("inter_intra_ratio", True, "more separated relative to its spread", "inter/intra ratio"),
    ("silhouette", True, "better clustered", "silhouette"),
)
# Values this close (relative) are a tie, not a winner.
TIE_TOLERANCE = 1e-6


def _winner_clause(
    runs: Sequence[RunNumbers], moment: str, metric: str, larger: bool, better: str, label: str
) -> str | None:
    values = [
        (run.name, (run.at_peak if moment == "peak" else run.at_last).get(metric)) for run in runs
    ]
    known = [(name, value) for name, value in values if value is not None and math.isfinite(value)]
    if len(known) < 2:
        return None
    best_name, best_value = (max if larger else min)(known, key=lambda item: item[1])
    tied = [
        name
        for name, value in known
        if math.isclose(value, best_value, rel_tol=TIE_TOLERANCE, abs_tol=1e-12)
    ]
    if len(tied) == len(known):
        return f"all runs have the same {label} ({number(best_value)})"
    if len(tied) > 1:
        return f"{', '.join(tied)} tie for the best {label} ({number(best_value)})"
    others = "; ".join(f"{name} {number(value)}" for name, value in known if name != best_name)
    if len(known) > 2:
        better = better.replace("more ", "the most ", 1).replace("better ", "the best ", 1)
    return f"{best_name} is {better} ({label} {number(best_value)} vs {others})"


def compare_runs(runs: Sequence[RunNumbers], left_out: Sequence[str] = ()) -> list[str]:
    """Sentences comparing runs at their own peaks and at their last epochs. ``left_out``
    names runs that are not compared (degenerate runs): they are named, not ranked."""
    excluded = (
        [f"Left out of the comparison (see the warnings above): {', '.join(left_out)}."]
        if left_out
        else []
    )
    if len(runs) < 2:
        return excluded if len(runs) + len(left_out) >= 2 else []
    top = max(run.result.peak_accuracy for run in runs)
    leaders = [run.name for run in runs if run.result.peak_accuracy == top]
    highest = f"the highest is {leaders[0]}" if len(leaders) == 1 else f"tied: {', '.join(leaders)}"
    peaks = ", ".join(
        f"{run.name} {percent(run.result.peak_accuracy)} at epoch {run.result.peak_epoch}"
        for run in runs
    )
    declines = ", ".join(f"{run.name} {points(run.result.decline)}" for run in runs)
    sentences = [
        f"Peak test accuracy: {peaks}; {highest}.",
        f"Decline after the peak (points): {declines}.",
    ]
    for moment, label in (("peak", "At each run's peak"), ("last", "At the last epoch")):
        clauses = [
            clause
            for metric, larger, better, label in COMPARISONS
            if (clause := _winner_clause(runs, moment, metric, larger, better, label)) is not None
        ]
        if clauses:
            sentences.append(f"{label}, " + ", ".join(clauses) + ".")
    return sentences + excluded

"""Peak-and-decline analysis of a test-accuracy curve and the findings written from the numbers.

Definitions (docs/report.md):
- peak: the epoch of maximum test accuracy (ties: the earliest);
- decline: peak accuracy minus the mean of the last ``k`` epochs after the peak (fewer when fewer
  epochs follow the peak; none when the peak is the last epoch);
- noise: the standard deviation of the epoch-to-epoch accuracy changes from the peak on; the
  decline is called real when it is at least ``REAL_DECLINE_RATIO`` times that noise;
- epochs to a threshold: the first epoch whose test accuracy reaches it.

Everything here is a pure function of arrays or a tidy metrics frame, and the text is plain (not
escaped): the report escapes it for HTML and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError

DEFAULT_LAST_K = 5
DEFAULT_THRESHOLD = 0.97
# A decline this many times the epoch-to-epoch noise is unlikely to be a fluctuation.
REAL_DECLINE_RATIO = 2.0
# Relative changes smaller than this are reported as "stays near".
STEADY_RELATIVE_CHANGE = 0.02

VERDICT_NO_DECLINE = "no decline"
VERDICT_REAL = "real decline"
VERDICT_NOISE = "within noise"
VERDICT_TOO_FEW = "too few epochs after the peak to judge"

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


@dataclass(frozen=True)
class PeakDecline:
    """Where a test-accuracy curve peaks and how far it falls afterwards (accuracies: fractions)."""

    peak_epoch: int
    peak_accuracy: float
    final_epoch: int
    final_accuracy: float
    last_k: int  # epochs actually averaged for the tail (0 when the peak is the last epoch)
    tail_mean: float  # mean accuracy of those epochs (the peak accuracy when there are none)
    decline: float  # peak_accuracy - tail_mean, in fraction units
    threshold: float
    epoch_reaching_threshold: int | None
    noise: float | None  # std of the accuracy changes from the peak on (None: too few epochs)
    noise_ratio: float | None  # decline / noise (inf for a perfectly smooth decline)
    verdict: str
    epochs_after_peak: int

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        # JSON has no infinity: a noiseless decline is reported as null ratio with the verdict.
        if self.noise_ratio is not None and not math.isfinite(self.noise_ratio):
            values["noise_ratio"] = None
        return values


def peak_and_decline(
    epochs: Sequence[int] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    last_k: int = DEFAULT_LAST_K,
    threshold: float = DEFAULT_THRESHOLD,
) -> PeakDecline:
    """Peak, decline, noise and epochs-to-threshold of one test-accuracy curve.

    ``epochs`` and ``accuracy`` are parallel arrays (rows of a store); NaN accuracies are ignored.
    """
    if last_k < 1:
        raise CLAnalyzeError(f"--last-k must be >= 1, got {last_k}: use 5 (the default)")
    if not 0 < threshold <= 1:
        raise CLAnalyzeError(
            f"--threshold must be a fraction in (0, 1], got {threshold}: e.g. 0.97 for 97%"
        )
    epoch_array = np.asarray(epochs, dtype=np.int64)
    accuracy_array = np.asarray(accuracy, dtype=np.float64)
    if epoch_array.shape != accuracy_array.shape or epoch_array.ndim != 1:
        raise CLAnalyzeError(
            f"epochs {epoch_array.shape} and accuracies {accuracy_array.shape} differ in shape:"
            " pass one accuracy per epoch"
        )
    known = ~np.isnan(accuracy_array)
    epoch_array, accuracy_array = epoch_array[known], accuracy_array[known]
    if len(accuracy_array) == 0:
        raise CLAnalyzeError("no test accuracy recorded yet: report the run after its first epoch")
    order = np.argsort(epoch_array, kind="stable")
    epoch_array, accuracy_array = epoch_array[order], accuracy_array[order]

    peak_row = int(np.argmax(accuracy_array))  # argmax returns the first of ties: the earliest
    peak_accuracy = float(accuracy_array[peak_row])
    after_peak = accuracy_array[peak_row + 1 :]
    tail = after_peak[-last_k:]
    tail_mean = float(tail.mean()) if len(tail) else peak_accuracy
    decline = peak_accuracy - tail_mean

    changes = np.diff(accuracy_array[peak_row:])
    noise = float(np.std(changes, ddof=1)) if len(changes) >= 2 else None
    noise_ratio: float | None = None
    if len(after_peak) == 0 or decline <= 0:
        verdict = VERDICT_NO_DECLINE  # nothing after the peak, or a plateau at the peak
    elif noise is None:
        verdict = VERDICT_TOO_FEW
    else:
        noise_ratio = decline / noise if noise > 0 else (math.inf if decline > 0 else 0.0)
        verdict = VERDICT_REAL if noise_ratio >= REAL_DECLINE_RATIO else VERDICT_NOISE

    reached = np.flatnonzero(accuracy_array >= threshold)
    return PeakDecline(
        peak_epoch=int(epoch_array[peak_row]),
        peak_accuracy=peak_accuracy,
        final_epoch=int(epoch_array[-1]),
        final_accuracy=float(accuracy_array[-1]),
        last_k=len(tail),
        tail_mean=tail_mean,
        decline=decline,
        threshold=threshold,
        epoch_reaching_threshold=int(epoch_array[reached[0]]) if len(reached) else None,
        noise=noise,
        noise_ratio=noise_ratio,
        verdict=verdict,
        epochs_after_peak=len(after_peak),
    )


def metrics_at(frame: pd.DataFrame, epoch: int, split: str = "test") -> dict[str, float]:
    """Whole-split metric values (class '') of one epoch from a tidy metrics frame."""
    if frame.empty:
        return {}
    rows = frame[(frame["epoch"] == epoch) & (frame["split"] == split) & (frame["class"] == "")]
    pairs = zip(rows["metric"], rows["value"], strict=True)
    return {str(name): float(value) for name, value in pairs}


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def describe_change(words: str, before: float, after: float) -> str:
    """'the silhouette rises from 0.41 to 0.52 (+27%)', or 'stays near' for small changes."""
    if not (math.isfinite(before) and math.isfinite(after)):
        return f"{words} goes from {_number(before)} to {_number(after)}"
    scale = max(abs(before), abs(after))
    relative = (after - before) / abs(before) if before != 0 else math.inf
    if scale == 0 or abs(after - before) <= STEADY_RELATIVE_CHANGE * scale:
        return f"{words} stays near {_number(after)}"
    verb = "rises" if after > before else "falls"
    shown = f"{relative:+.0%}"
    if shown in ("+100%", "-100%") and abs(relative) != 1:
        shown = f"{relative:+.1%}"  # -99.8% must not read as a drop to zero
    change = f" ({shown})" if math.isfinite(relative) else ""
    return f"{words} {verb} from {_number(before)} to {_number(after)}{change}"


def decline_sentence(result: PeakDecline) -> str:
    """The accuracy finding of one run, stated with its numbers and the noise verdict."""
    text = f"Test accuracy peaks at {percent(result.peak_accuracy)} at epoch {result.peak_epoch}"
    if result.epochs_after_peak == 0:
        return text + ", the last epoch recorded: no decline (yet)."
    if result.verdict == VERDICT_NO_DECLINE:
        return text + f" and stays there through epoch {result.final_epoch}: no decline."
    tail = (
        f"the mean of the last {result.last_k} epochs"
        if result.last_k > 1
        else f"epoch {result.final_epoch}"
    )
    text += (
        f" and declines by {100 * result.decline:.2f} points to {percent(result.tail_mean)}"
        f" ({tail}); at the last epoch, {result.final_epoch}, it is"
        f" {percent(result.final_accuracy)}."
    )
    if result.verdict == VERDICT_TOO_FEW:
        return (
            text + f" Only {result.epochs_after_peak} epoch(s) follow the peak: too few to judge."
        )
    assert result.noise is not None and result.noise_ratio is not None
    noise = f"the epoch-to-epoch noise ({100 * result.noise:.2f} points)"
    if result.verdict == VERDICT_REAL:
        ratio = (
            "far above" if not math.isfinite(result.noise_ratio) else f"{result.noise_ratio:.1f}x"
        )
        return text + f" The decline is {ratio} {noise}: a real decline."
    return text + f" The decline is {result.noise_ratio:.1f}x {noise}: within noise."


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
        return f"all runs have the same {label} ({_number(best_value)})"
    if len(tied) > 1:
        return f"{', '.join(tied)} tie for the best {label} ({_number(best_value)})"
    others = "; ".join(f"{name} {_number(value)}" for name, value in known if name != best_name)
    if len(known) > 2:
        better = better.replace("more ", "the most ", 1).replace("better ", "the best ", 1)
    return f"{best_name} is {better} ({label} {_number(best_value)} vs {others})"


def compare_runs(runs: Sequence[RunNumbers]) -> list[str]:
    """Sentences comparing runs at their own peaks and at their last epochs."""
    if len(runs) < 2:
        return []
    top = max(run.result.peak_accuracy for run in runs)
    leaders = [run.name for run in runs if run.result.peak_accuracy == top]
    highest = f"the highest is {leaders[0]}" if len(leaders) == 1 else f"tied: {', '.join(leaders)}"
    peaks = ", ".join(
        f"{run.name} {percent(run.result.peak_accuracy)} at epoch {run.result.peak_epoch}"
        for run in runs
    )
    declines = ", ".join(f"{run.name} {100 * run.result.decline:.2f}" for run in runs)
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
    return sentences

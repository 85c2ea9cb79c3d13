"""Seeds pooled: runs that differ only in their seed, summarised as means with 95% intervals,
their mean accuracy curve with a band, the decline test on that curve, and groups compared.

- Replicates: runs whose stored configs are equal once ``seed`` and the options that do not
  change what is trained (``NOT_TRAINING_OPTIONS``) are set aside.
- Interval of a mean over S seeds: Student's t, mean ± t(0.975, S-1) sd / sqrt(S) (scipy),
  cut to the range the mean cannot leave (0-1 for accuracies, the recorded epochs).
- Two groups differ by more than the seed-to-seed spread when the 95% Welch interval of the
  difference of their means (scipy's ``ttest_ind(equal_var=False)``) excludes 0.
Definitions and measured error rates: docs/report.md.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from cl_analyze.findings.decline import (
    DEFAULT_LAST_K,
    DEFAULT_THRESHOLD,
    PeakDecline,
    peak_and_decline,
)
from cl_analyze.findings.numbers import percent, points
from cl_analyze.findings.sentences import decline_sentence

SEED_OPTION = "seed"
# Options that change where or how a run is stored or run, not what it learns; ``epochs`` too:
# seeds trained for different lengths are pooled over the epochs they share.
NOT_TRAINING_OPTIONS = frozenset({"device", "data_dir", "download", "keep_checkpoints", "epochs"})
CONFIDENCE = 0.95
# Options named first in a group's label; the rest follow alphabetically.
LABEL_ORDER = ("loss", "center_weight", "center_update", "dataset", "lr")


@dataclass(frozen=True)
class Interval:
    """The mean of per-seed values with its 95% t-interval (NaN bounds for a single value)."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        finite = [self.low, self.high]
        return {
            "mean": self.mean,
            "low": None if not math.isfinite(finite[0]) else finite[0],
            "high": None if not math.isfinite(finite[1]) else finite[1],
            "values": list(self.values),
        }


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)
) -> Interval:
    """Mean and 95% t-interval, cut to ``bounds``: the range the mean cannot leave (0-1 for an
    accuracy, the recorded epochs for an epoch). Cutting keeps the coverage and spares a
    reader an interval reaching epoch -3 or 101%."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return Interval(mean, math.nan, math.nan, tuple(array.tolist()))
    spread = float(array.std(ddof=1)) / math.sqrt(len(array))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(array) - 1)) * spread
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return Interval(mean, low, high, tuple(array.tolist()))


@dataclass(frozen=True)
class SeedRun:
    """What pooling needs from one run."""

    name: str
    config: Mapping[str, Any]
    epochs: np.ndarray
    accuracy: np.ndarray  # test accuracy per epoch (fractions)
    n_test: int


def replicate_key(config: Mapping[str, Any]) -> str:
    """Equal for runs that differ only in their seed (and options that do not train)."""
    kept = {k: v for k, v in config.items() if k != SEED_OPTION and k not in NOT_TRAINING_OPTIONS}
    return json.dumps(kept, sort_keys=True, default=str)


def group_replicates(runs: Sequence[SeedRun]) -> list[tuple[str, list[SeedRun]]]:
    """Runs grouped by ``replicate_key``, in order of first appearance, each with a label
    naming the options in which the groups differ ('loss=center, center_weight=0.1')."""
    groups: dict[str, list[SeedRun]] = {}
    for run in runs:
        groups.setdefault(replicate_key(run.config), []).append(run)
    found = {k for run in runs for k in run.config}
    keys = [k for k in LABEL_ORDER if k in found] + sorted(found - set(LABEL_ORDER))
    differing = [
        k
        for k in keys
        if k != SEED_OPTION
        and k not in NOT_TRAINING_OPTIONS
        and len({json.dumps(group[0].config.get(k), default=str) for group in groups.values()}) > 1
    ]
    labelled = []
    for members in groups.values():
        config = members[0].config
        shown = differing or (["loss"] if "loss" in config else [])
        label = ", ".join(f"{k}={config.get(k)}" for k in shown) or "runs"
        labelled.append((label, members))
    return labelled


@dataclass(frozen=True)
class SeedGroup:
    """Replicate runs pooled over the epochs they all recorded."""

    label: str
    runs: tuple[str, ...]
    seeds: tuple[Any, ...]
    epochs: np.ndarray
    mean_curve: np.ndarray
    band_low: np.ndarray  # 95% t-interval of the mean accuracy at each epoch (within 0-1)
    band_high: np.ndarray
    peak_epoch: Interval
    peak_accuracy: Interval
    decline: Interval
    epochs_to_threshold: Interval | None  # over the seeds that reach the threshold
    never_reached: int  # seeds that never reach it
    pooled: PeakDecline  # peak, decline and decline test of the mean curve
    left_out: tuple[str, ...] = ()  # replicates not pooled, each 'name (why)'

    @property
    def size(self) -> int:
        return len(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "runs": list(self.runs),
            "seeds": list(self.seeds),
            "left_out": list(self.left_out),
            "epochs": [int(self.epochs[0]), int(self.epochs[-1])],
            "peak_epoch": self.peak_epoch.to_dict(),
            "peak_accuracy": self.peak_accuracy.to_dict(),
            "decline": self.decline.to_dict(),
            "epochs_to_threshold": None
            if self.epochs_to_threshold is None
            else self.epochs_to_threshold.to_dict(),
            "never_reached": self.never_reached,
            "pooled_curve": self.pooled.to_dict(),
        }


def pool_seeds(
    label: str,
    runs: Sequence[SeedRun],
    *,
    last_k: int = DEFAULT_LAST_K,
    threshold: float = DEFAULT_THRESHOLD,
    left_out: Sequence[str] = (),
) -> SeedGroup:
    """Pool two or more replicate runs over the epochs all of them recorded."""
    if len(runs) < 2:
        raise ValueError("pooling needs at least two runs")
    common = sorted(set.intersection(*({int(e) for e in run.epochs} for run in runs)))
    if not common:
        raise ValueError("the runs share no epoch")
    epochs = np.asarray(common, dtype=np.int64)
    curves = np.stack(
        [
            np.asarray(run.accuracy, dtype=np.float64)[np.searchsorted(run.epochs, epochs)]
            for run in runs
        ]
    )
    each = [
        peak_and_decline(epochs, curve, last_k=last_k, threshold=threshold, n_test=run.n_test)
        for run, curve in zip(runs, curves, strict=True)
    ]
    mean_curve = curves.mean(0)
    spread = curves.std(0, ddof=1) / math.sqrt(len(runs))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(runs) - 1)) * spread
    span = (float(epochs[0]), float(epochs[-1]))
    reached = [r.epoch_reaching_threshold for r in each if r.epoch_reaching_threshold is not None]
    # The mean of S accuracies moves in steps of 1 / (S n_test): its resolution.
    pooled_n = sum(run.n_test for run in runs)
    return SeedGroup(
        label=label,
        runs=tuple(run.name for run in runs),
        seeds=tuple(run.config.get(SEED_OPTION) for run in runs),
        epochs=epochs,
        mean_curve=mean_curve,
        band_low=np.clip(mean_curve - half, 0.0, 1.0),
        band_high=np.clip(mean_curve + half, 0.0, 1.0),
        peak_epoch=mean_interval([r.peak_epoch for r in each], span),
        peak_accuracy=mean_interval([r.peak_accuracy for r in each], (0.0, 1.0)),
        decline=mean_interval([r.decline for r in each], (0.0, 1.0)),
        epochs_to_threshold=mean_interval(reached, span) if reached else None,
        never_reached=len(each) - len(reached),
        pooled=peak_and_decline(
            epochs, mean_curve, last_k=last_k, threshold=threshold, n_test=pooled_n
        ),
        left_out=tuple(left_out),
    )


@dataclass(frozen=True)
class Difference:
    """first minus second, with the 95% Welch interval; beyond the spread when it excludes 0."""

    difference: float
    low: float
    high: float

    @property
    def beyond_spread(self) -> bool:
        return self.low > 0 or self.high < 0


def welch_difference(first: Sequence[float], second: Sequence[float]) -> Difference | None:
    """None with fewer than two values on a side (no spread to compare with)."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    difference = float(a.mean() - b.mean())
    if a.std() == 0 and b.std() == 0:
        return Difference(difference, difference, difference)  # no spread at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly equal values: scipy's caveat
        interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(CONFIDENCE)
    return Difference(difference, float(interval.low), float(interval.high))


# (attribute, how a sentence names it, unit, as a fraction of 1)
POOLED_QUANTITIES: tuple[tuple[str, str, str, bool], ...] = (
    ("peak_accuracy", "Peak test accuracy", "points", True),
    ("decline", "Decline after the peak", "points", True),
    ("peak_epoch", "Peak epoch", "epochs", False),
    ("epochs_to_threshold", "First epoch reaching the threshold", "epochs", False),
)


def _value(value: float, fraction: bool, absolute: bool = False) -> str:
    if fraction:
        return percent(value) if absolute else points(value)
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def interval_text(interval: Interval, fraction: bool, absolute: bool, unit: str = "") -> str:
    """'98.90% (95% interval 98.70% to 99.10%)'; a single seed has no interval."""
    mean = _value(interval.mean, fraction, absolute) + unit
    if not math.isfinite(interval.low):
        return f"{mean} (one seed)"
    low, high = _value(interval.low, fraction, absolute), _value(interval.high, fraction, absolute)
    return f"{mean} (95% interval {low} to {high})"


def compare_groups(first: SeedGroup, second: SeedGroup) -> list[str]:
    """For each pooled quantity: both groups' means and intervals, the difference with its
    Welch interval, and whether it is larger than the seed-to-seed spread."""
    sentences = []
    for attribute, words, unit, fraction in POOLED_QUANTITIES:
        a, b = getattr(first, attribute), getattr(second, attribute)
        if a is None or b is None:
            continue
        absolute = attribute == "peak_accuracy"
        if len(set(a.values) | set(b.values)) == 1:  # nothing varies: nothing to weigh
            value = _value(a.values[0], fraction, absolute)
            sentences.append(f"{words}: {value}{'' if absolute else ' ' + unit} for every seed.")
            continue
        difference = welch_difference(a.values, b.values)
        shown = "" if absolute else f" {unit}"
        text = (
            f"{words}: {first.label} {interval_text(a, fraction, absolute, shown)} vs"
            f" {second.label} {interval_text(b, fraction, absolute, shown)}"
        )
        if difference is None:
            sentences.append(text + "; too few seeds on one side to compare them.")
            continue
        verdict = (
            "larger than the seed-to-seed spread"
            if difference.beyond_spread
            else "within the seed-to-seed spread: these seeds do not tell them apart"
        )
        sentences.append(
            text + f"; the difference, {_value(difference.difference, fraction)} {unit}"
            f" (95% interval {_value(difference.low, fraction)} to"
            f" {_value(difference.high, fraction)}), is {verdict}."
        )
    return sentences


def group_findings(group: SeedGroup) -> list[str]:
    """The pooled numbers of one group in words, and the decline test on its mean curve."""
    count = len(group.runs)
    sentences = [
        f"{group.label}, {count} seeds ({', '.join(str(s) for s in group.seeds)}), epochs"
        f" {int(group.epochs[0])} to {int(group.epochs[-1])}: peak test accuracy"
        f" {interval_text(group.peak_accuracy, True, True)} at epoch"
        f" {interval_text(group.peak_epoch, False, False)}; decline"
        f" {interval_text(group.decline, True, False, ' points')}."
    ]
    threshold = f"{100 * group.pooled.threshold:g}%"
    if group.epochs_to_threshold is None:
        sentences.append(f"No seed reaches {threshold}.")
    else:
        never = f"; {group.never_reached} of {count} never do" if group.never_reached else ""
        sentences.append(
            f"The seeds first reach {threshold} at epoch"
            f" {interval_text(group.epochs_to_threshold, False, False)}{never}."
        )
    pooled = decline_sentence(group.pooled)
    sentences.append("On the mean curve, " + pooled[0].lower() + pooled[1:])
    if group.left_out:
        sentences.append(f"Left out: {'; '.join(group.left_out)}.")
    return sentences


def _pairs(groups: Sequence[SeedGroup]) -> list[tuple[SeedGroup, SeedGroup]]:
    """All pairs of up to three groups; with more, each against the one with the highest mean
    peak accuracy."""
    if len(groups) <= 3:
        return [(a, b) for i, a in enumerate(groups) for b in groups[i + 1 :]]
    best = max(groups, key=lambda group: group.peak_accuracy.mean)
    return [(best, group) for group in groups if group is not best]


def group_comparisons(groups: Sequence[SeedGroup]) -> list[str]:
    """The groups compared in words (``compare_groups`` on each of ``_pairs``)."""
    return [sentence for a, b in _pairs(groups) for sentence in compare_groups(a, b)]


def group_differences(groups: Sequence[SeedGroup]) -> list[dict[str, Any]]:
    """The same comparisons as numbers: first minus second with the 95% Welch interval."""
    rows = []
    for first, second in _pairs(groups):
        for attribute, _, _, _ in POOLED_QUANTITIES:
            a, b = getattr(first, attribute), getattr(second, attribute)
            difference = None if a is None or b is None else welch_difference(a.values, b.values)
            if difference is None:
                continue
            rows.append(
                {
                    "quantity": attribute,
                    "first": first.label,
                    "second": second.label,
                    "difference": difference.difference,
                    "low": difference.low,
                    "high": difference.high,
                    "beyond_spread": difference.beyond_spread,
                }
            )
    return rows

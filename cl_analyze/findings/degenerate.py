"""Runs that learned nothing, diverged or collapsed: warned about and left out of comparisons.

- chance: the best test accuracy is within ``CHANCE_STANDARD_ERRORS`` binomial standard errors
  of chance, 1/C: sqrt((1/C)(1 - 1/C) / n_test);
- non-finite loss: a training loss is NaN or infinite at a trained epoch (epoch 0 has none), or
  the test loss at any epoch; a loss a run never records (softmax's center loss) is not one;
- collapsed features: at the last epoch, the mean test feature norm is at most
  ``COLLAPSE_FRACTION`` of its largest value over the run (0 when it never left the origin).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cl_analyze.findings.numbers import number, percent, points

CHANCE_STANDARD_ERRORS = 2.0
COLLAPSE_FRACTION = 0.01

KIND_CHANCE = "chance level"
KIND_LOSS = "non-finite loss"
KIND_COLLAPSE = "collapsed features"


@dataclass(frozen=True)
class RunWarning:
    run: str
    kind: str  # KIND_CHANCE, KIND_LOSS or KIND_COLLAPSE
    text: str  # one sentence, starting with the run's name


def chance_warning(
    run: str, accuracy: np.ndarray, num_classes: int, n_test: int
) -> RunWarning | None:
    known = np.asarray(accuracy, dtype=np.float64)
    known = known[np.isfinite(known)]
    if len(known) == 0 or num_classes < 2 or n_test < 1:
        return None
    chance = 1.0 / num_classes
    margin = CHANCE_STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / n_test)
    best = float(known.max())
    if best > chance + margin:
        return None
    return RunWarning(
        run,
        KIND_CHANCE,
        f"{run} is at chance level: its best test accuracy, {percent(best)}, is within two"
        f" standard errors ({points(margin)} points on {n_test} test samples) of chance,"
        f" {percent(chance)} for {num_classes} classes.",
    )


def _first_bad(epochs: np.ndarray, values: np.ndarray, required: bool) -> tuple[int, str] | None:
    """The first epoch whose value is not finite, when the series is expected finite there."""
    if not required and not np.isfinite(values).any():
        return None  # a loss this run never records
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad) == 0:
        return None
    value = values[bad[0]]
    return int(epochs[bad[0]]), "NaN" if math.isnan(value) else str(value)


def loss_warning(
    run: str, epochs: np.ndarray, history: Mapping[str, np.ndarray]
) -> RunWarning | None:
    """The first loss that became NaN or infinite, and when."""
    epochs = np.asarray(epochs, dtype=np.int64)
    found: list[tuple[int, str, str]] = []
    for name in sorted(history):
        if "loss" not in name:
            continue
        values = np.asarray(history[name], dtype=np.float64)
        # Training losses exist from epoch 1 on; cross-entropy is every run's loss.
        rows = epochs >= 1 if name.startswith("train") else np.ones(len(epochs), dtype=bool)
        bad = _first_bad(epochs[rows], values[rows], required=name.endswith("_ce"))
        if bad is not None:
            found.append((bad[0], name, bad[1]))
    if not found:
        return None
    epoch, name, value = min(found)
    return RunWarning(
        run, KIND_LOSS, f"{run} diverged: its {name} is {value} from epoch {epoch} on."
    )


def collapse_warning(run: str, feature_norm: Mapping[int, float]) -> RunWarning | None:
    """Collapse at the last epoch, from the mean test feature norm of each epoch."""
    finite = {epoch: value for epoch, value in feature_norm.items() if math.isfinite(value)}
    if not finite:
        return None
    last = max(finite)
    largest = max(finite.values())
    if finite[last] > COLLAPSE_FRACTION * largest:
        return None
    return RunWarning(
        run,
        KIND_COLLAPSE,
        f"{run}'s features collapsed: at its last epoch, {last}, the mean test feature norm is"
        f" {number(finite[last])}, at most {COLLAPSE_FRACTION:.0%} of its largest,"
        f" {number(largest)}.",
    )


def run_warnings(
    run: str,
    epochs: Sequence[int] | np.ndarray,
    history: Mapping[str, np.ndarray],
    *,
    num_classes: int,
    n_test: int,
    feature_norm: Mapping[int, float] | None = None,
) -> list[RunWarning]:
    """Every warning about one run: chance level, a non-finite loss, collapsed features."""
    epoch_array = np.asarray(epochs, dtype=np.int64)
    candidates = [
        chance_warning(run, history.get("test_accuracy", np.array([])), num_classes, n_test),
        loss_warning(run, epoch_array, history),
        collapse_warning(run, feature_norm or {}),
    ]
    return [warning for warning in candidates if warning is not None]

"""Peak and decline of a test-accuracy curve, and a test of whether the decline is real.

Definitions (docs/report.md, with the test's measured error rates):
- peak: the epoch of maximum test accuracy (ties: the earliest);
- decline: peak accuracy minus the mean of the last ``k`` epochs after the peak (fewer when fewer
  epochs follow the peak; none when the peak is the last epoch);
- resolution: one test sample, ``1 / n_test``; a decline below it is no decline;
- the decline test: the peak is the highest of noisy values, so even a curve with no decline
  shows one. The p-value is the share of simulated curves with no decline (a flat plateau as
  long as the observed one, with the curve's own AR(1) noise, ``noise.py``) whose decline,
  divided by its own noise estimate, is at least the observed one; ``p < SIGNIFICANCE`` is a
  real decline;
- epochs to a threshold: the first epoch whose test accuracy reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings.noise import fit_noise, simulate_flat

DEFAULT_LAST_K = 5
DEFAULT_THRESHOLD = 0.97
# One-sided level of the decline test: the share of no-decline curves it may call real.
SIGNIFICANCE = 0.05
# Fewer epochs after the peak than this cannot be tested: the noise is fitted on them.
MIN_EPOCHS_AFTER_PEAK = 8
# Simulated no-decline curves per test: the p-value's Monte Carlo error is about 0.007 at 0.05.
SIMULATIONS = 1000
SIMULATION_SEED = 12  # fixed: the same curve always gets the same p-value
# The plateau simulated starts at the first epoch within this many noise standard deviations of
# the final level: the peak could have been anywhere there, and the longer the plateau, the
# higher its maximum.
PLATEAU_MARGIN = 3.0
# Without a test-set size, declines under this are float rounding, not a decline.
DEFAULT_RESOLUTION = 1e-6

VERDICT_NO_DECLINE = "no decline"
VERDICT_REAL = "real decline"
VERDICT_NOISE = "within noise"
VERDICT_TOO_FEW = "too few epochs after the peak to judge"


@dataclass(frozen=True)
class DeclineTest:
    """The decline test of one curve (accuracies and noise as fractions).

    ``statistic`` is the decline divided by the noise; ``p_value`` the share of simulated
    no-decline curves with a statistic at least as large. ``excess`` is the decline beyond what
    picking the maximum of noise gives (the observed decline minus the simulated median), with
    a 90% interval whose lower end is above 0 exactly when ``p_value < 0.05``.
    """

    statistic: float
    p_value: float
    noise: float  # marginal standard deviation of the epoch-to-epoch noise (>= the resolution)
    autocorrelation: float  # lag-1 correlation of the noise used in the simulation
    plateau_epochs: int  # length of the simulated plateau
    excess: float
    excess_low: float
    excess_high: float
    simulations: int


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
    resolution: float  # one test sample (1 / n_test): smaller declines are no decline
    test: DeclineTest | None  # None when there is nothing to test (see the verdict)
    verdict: str
    epochs_after_peak: int

    @property
    def noise(self) -> float | None:
        return None if self.test is None else self.test.noise

    @property
    def p_value(self) -> float | None:
        return None if self.test is None else self.test.p_value

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["test"] = None if self.test is None else asdict(self.test)
        return values


def _check_options(last_k: int, threshold: float) -> None:
    if last_k < 1:
        raise CLAnalyzeError(f"--last-k must be >= 1, got {last_k}: use 5 (the default)")
    if not 0 < threshold <= 1:
        raise CLAnalyzeError(
            f"--threshold must be a fraction in (0, 1], got {threshold}: e.g. 0.97 for 97%"
        )


def sorted_curve(
    epochs: Sequence[int] | np.ndarray, accuracy: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The curve's epochs and accuracies sorted by epoch, NaN accuracies dropped."""
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
    return epoch_array[order], accuracy_array[order]


def peak_and_decline(
    epochs: Sequence[int] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    last_k: int = DEFAULT_LAST_K,
    threshold: float = DEFAULT_THRESHOLD,
    n_test: int | None = None,
) -> PeakDecline:
    """Peak, decline, the decline test and epochs-to-threshold of one test-accuracy curve.

    ``epochs`` and ``accuracy`` are parallel arrays (rows of a store); NaN accuracies are
    ignored. ``n_test`` is the number of test samples behind each accuracy (for a mean over S
    seeds, S times that): a decline below one sample is no decline, and the noise is never taken
    to be smaller than one sample.
    """
    _check_options(last_k, threshold)
    if n_test is not None and n_test < 1:
        raise CLAnalyzeError(f"n_test must be >= 1, got {n_test}: pass the test split's size")
    epoch_array, accuracy_array = sorted_curve(epochs, accuracy)
    resolution = DEFAULT_RESOLUTION if n_test is None else 1.0 / n_test

    peak_row = int(np.argmax(accuracy_array))  # argmax returns the first of ties: the earliest
    peak_accuracy = float(accuracy_array[peak_row])
    after_peak = accuracy_array[peak_row + 1 :]
    tail = after_peak[-last_k:]
    tail_mean = float(tail.mean()) if len(tail) else peak_accuracy
    decline = peak_accuracy - tail_mean

    test = None
    if len(after_peak) == 0 or decline < resolution * (1 - 1e-9):
        verdict = VERDICT_NO_DECLINE  # nothing after the peak, or less than one test sample
    elif len(after_peak) < MIN_EPOCHS_AFTER_PEAK:
        verdict = VERDICT_TOO_FEW
    else:
        test = decline_test(accuracy_array, last_k=last_k, resolution=resolution)
        verdict = VERDICT_REAL if test.p_value < SIGNIFICANCE else VERDICT_NOISE

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
        resolution=resolution,
        test=test,
        verdict=verdict,
        epochs_after_peak=len(after_peak),
    )


def declines(curves: np.ndarray, last_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``curves`` (B, L): the decline as ``peak_and_decline`` defines it, and the
    column of the peak (the earliest maximum)."""
    count, length = curves.shape
    peak = curves.argmax(1)
    top = curves[np.arange(count), peak]
    column = np.arange(length)
    in_tail = column[None, :] >= np.maximum(peak + 1, length - last_k)[:, None]
    size = in_tail.sum(1)
    tail = np.where(size > 0, (curves * in_tail).sum(1) / np.maximum(size, 1), top)
    return top - tail, peak


def decline_test(
    accuracy: np.ndarray,
    *,
    last_k: int = DEFAULT_LAST_K,
    resolution: float = DEFAULT_RESOLUTION,
    simulations: int = SIMULATIONS,
    seed: int = SIMULATION_SEED,
) -> DeclineTest:
    """The decline test of a curve (sorted by epoch, no NaN) with at least
    ``MIN_EPOCHS_AFTER_PEAK`` epochs after its peak.

    1. Fit a line plus AR(1) noise to the epochs after the peak (``noise.fit_noise``), taking
       the autocorrelation's upper bound; the noise is at least ``resolution``.
    2. Simulate flat curves with that noise, as long as the stretch of the observed curve that
       lies within ``PLATEAU_MARGIN`` noise standard deviations of its final level or above.
    3. Apply the same procedure to each simulated curve (its own peak, decline and noise fit;
       curves with too few epochs after their peak are left out, as they would not be tested),
       and compare the studentised declines: p = (1 + #{T* >= T}) / (1 + #simulations).
    """
    curve = np.asarray(accuracy, dtype=np.float64)
    observed, peaks = declines(curve[None, :], last_k)
    peak_row, decline = int(peaks[0]), float(observed[0])
    if len(curve) - 1 - peak_row < MIN_EPOCHS_AFTER_PEAK:
        raise ValueError(f"the decline test needs {MIN_EPOCHS_AFTER_PEAK} epochs after the peak")
    fitted = fit_noise(curve[None, :], np.array([peak_row + 1]))
    noise = max(float(fitted.sd[0]), resolution)
    simulated_noise = max(float(fitted.sd_upper[0]), resolution)
    phi = float(fitted.phi_upper[0])
    level = float(curve[peak_row + 1 :][-last_k:].mean())
    start = min(int(np.flatnonzero(curve >= level - PLATEAU_MARGIN * noise)[0]), peak_row)
    length = len(curve) - start
    statistic = decline / noise

    rng = np.random.default_rng(seed)
    null: list[np.ndarray] = []
    kept = 0
    # A short plateau rarely peaks early enough to be tested: draw more until enough are kept.
    for _ in range(10):
        flat = simulate_flat(simulated_noise, phi, length, simulations, rng)
        simulated, simulated_peaks = declines(flat, last_k)
        testable = length - 1 - simulated_peaks >= MIN_EPOCHS_AFTER_PEAK
        if testable.any():
            refitted = fit_noise(flat[testable], simulated_peaks[testable] + 1)
            null.append(simulated[testable] / np.maximum(refitted.sd, resolution))
            kept += int(testable.sum())
        if kept >= simulations:
            break
    statistics = np.sort(np.concatenate(null)) if null else np.zeros(1)
    count = len(statistics)
    p_value = (1 + int((statistics >= statistic).sum())) / (1 + count)
    # p < SIGNIFICANCE exactly when at most ``allowed`` simulated statistics reach T, i.e. when T
    # exceeds the (allowed + 1)-th largest: that value is the critical one, and the interval's
    # lower end (T - critical) * noise is above 0 exactly when the verdict is a real decline.
    allowed = max(int(np.ceil(SIGNIFICANCE * (1 + count))) - 2, -1)
    # The same float comparison as the verdict's, so a rounding never splits the two.
    while allowed >= 0 and not (1 + allowed) / (1 + count) < SIGNIFICANCE:
        allowed -= 1
    while allowed + 1 < count and (2 + allowed) / (1 + count) < SIGNIFICANCE:
        allowed += 1
    upper = float(statistics[count - 1 - allowed]) if allowed >= 0 else math.inf
    lower = float(statistics[allowed]) if allowed >= 0 else -math.inf
    middle = float(np.median(statistics))
    return DeclineTest(
        statistic=statistic,
        p_value=p_value,
        noise=noise,
        autocorrelation=phi,
        plateau_epochs=length,
        excess=(statistic - middle) * noise,
        excess_low=(statistic - upper) * noise,
        excess_high=(statistic - lower) * noise,
        simulations=count,
    )

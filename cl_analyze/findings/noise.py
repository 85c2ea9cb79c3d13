"""The epoch-to-epoch noise of accuracy curves: AR(1) errors around a line, fitted by REML, and
flat curves simulated with that noise.

Consecutive epochs share most of their weights, so their accuracies wander together: the noise is
modelled as a stationary AR(1) process (marginal standard deviation ``sd``, lag-1 correlation
``phi``) around a straight line. REML (the restricted likelihood, which accounts for the two line
parameters) estimates ``phi`` with far less downward bias than the sample autocorrelation of
detrended values; the likelihood is profiled over a grid of ``phi`` (exact, vectorised over many
curves at once). Definitions and measured error rates: docs/report.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

# 0 to 0.9: beyond 0.9 a curve wanders like a random walk and no decline could ever be told
# from it; 0.05 steps keep the fit of 1,000 simulated curves at a few milliseconds per value.
PHI_GRID = np.round(np.linspace(0.0, 0.9, 19), 2)
# The autocorrelation used is the largest on the grid whose restricted log-likelihood is within
# this of the maximum: about a one-sided 80% upper bound (chi-square(1) 0.6 quantile / 2).
# Short curves underestimate phi, which makes a decline test too eager; a bound instead of the
# point estimate measured <= 4% false declines on AR(1) noise with phi 0.5 and 0.8 (docs/report.md).
PHI_UPPER_DROP = 1.35
MIN_ROWS = 3  # a line and one residual


@dataclass(frozen=True)
class NoiseFit:
    """Per curve: the autocorrelation that maximises the restricted likelihood and the marginal
    standard deviation there, and the autocorrelation's upper bound (``PHI_UPPER_DROP``) with
    the standard deviation there (larger: more of the wander counts as noise)."""

    sd: np.ndarray
    phi: np.ndarray
    sd_upper: np.ndarray
    phi_upper: np.ndarray


def fit_noise(curves: np.ndarray, first: np.ndarray) -> NoiseFit:
    """REML fit of a line plus AR(1) noise to each row of ``curves`` (B, L) from column
    ``first[b]`` on (at least ``MIN_ROWS`` columns each). A row that lies exactly on a line
    has sd 0."""
    curves = np.asarray(curves, dtype=np.float64)
    count, length = curves.shape
    first = np.asarray(first, dtype=np.int64)
    if ((length - first) < MIN_ROWS).any():
        raise ValueError(f"each curve needs at least {MIN_ROWS} values to fit the noise")
    rows = (length - first).astype(np.float64)
    inner = rows - 1  # rows after the first, the ones Prais-Winsten differences
    # Centred time and values: the line absorbs both means, and the sums keep their digits.
    time = np.arange(length) - (length - 1) / 2.0
    y = curves - curves.mean(1, keepdims=True)
    last_y, last_time = y[:, -1], time[-1]

    def suffix(values: np.ndarray) -> np.ndarray:
        """Column j: the sum over columns >= j (a zero column appended)."""
        sums = np.zeros((*values.shape[:-1], length + 1))
        sums[..., :length] = np.flip(np.cumsum(np.flip(values, -1), -1), -1)
        return sums

    pick = np.arange(count)
    after = first + 1
    lagged = np.concatenate([np.zeros((count, 1)), y[:, 1:] * y[:, :-1]], axis=1)
    # Sums over the inner rows t of u_t = (1, t, y_t) and v_t = u_{t-1}; the lagged ones are
    # the sums from one column earlier without the last column.
    t1, t2 = suffix(time)[after], suffix(time * time)[after]
    sum_y, sum_yy, sum_yt = suffix(y), suffix(y * y), suffix(y * time)
    y1, y2, yt = sum_y[pick, after], sum_yy[pick, after], sum_yt[pick, after]
    y_lag = suffix(lagged)[pick, after]
    y1_prev = sum_y[pick, first] - last_y
    y2_prev = sum_yy[pick, first] - last_y * last_y
    yt_prev = sum_yt[pick, first] - last_y * last_time
    # Entries (00, 01, 11, 0y, 1y, yy) of sum u u', sum (u v' + v u') and sum v v'.
    uu = (inner, t1, t2, y1, yt, y2)
    uv = (
        2 * inner,
        2 * t1 - inner,
        2 * (t2 - t1),
        y1 + y1_prev,
        yt_prev + y1_prev + yt - y1,
        2 * y_lag,
    )
    vv = (inner, t1 - inner, t2 - 2 * t1 + inner, y1_prev, yt_prev, y2_prev)
    head_time, head_y = time[first], y[pick, first]
    head = (np.ones(count), head_time, head_time**2, head_y, head_time * head_y, head_y**2)
    # Prais-Winsten maps inner rows to (u_t - phi v_t) / sqrt(1 - phi^2) and keeps the first:
    # every transformed cross-product is a quadratic in phi of the sums above.
    phi = PHI_GRID[None, :]
    scale = 1.0 - phi * phi
    s00, s01, s11, s0y, s1y, syy = (
        h[:, None] + (a[:, None] - phi * b[:, None] + phi * phi * c[:, None]) / scale
        for h, a, b, c in zip(head, uu, uv, vv, strict=True)
    )
    determinant = s00 * s11 - s01 * s01
    b0 = (s11 * s0y - s01 * s1y) / determinant
    b1 = (s00 * s1y - s01 * s0y) / determinant
    variance = np.maximum(syy - b0 * s0y - b1 * s1y, 0.0) / (rows[:, None] - 2)
    # -1/2 [(n - p) log s^2 + log|R| + log|X' R^-1 X|], |R| = (1 - phi^2)^(n - 1).
    log_likelihood = -0.5 * (
        (rows[:, None] - 2) * np.log(np.maximum(variance, 1e-300))
        + (rows[:, None] - 1) * np.log(scale)
        + np.log(determinant)
    )
    best = log_likelihood.argmax(1)
    close = log_likelihood >= log_likelihood.max(1, keepdims=True) - PHI_UPPER_DROP
    upper = np.where(close, np.arange(len(PHI_GRID))[None, :], -1).max(1)
    rows_index = np.arange(count)
    # A curve on an exact line has no noise at all, whatever phi.
    exact = variance.max(1) <= 0
    return NoiseFit(
        sd=np.where(exact, 0.0, np.sqrt(variance[rows_index, best])),
        phi=np.where(exact, 0.0, PHI_GRID[best]),
        sd_upper=np.where(exact, 0.0, np.sqrt(variance[rows_index, upper])),
        phi_upper=np.where(exact, 0.0, PHI_GRID[upper]),
    )


def simulate_flat(
    sd: float, phi: float, length: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """(count, length) curves with no trend at all: stationary AR(1) noise of marginal
    standard deviation ``sd`` and lag-1 correlation ``phi``."""
    innovations = rng.standard_normal((count, length))
    innovations[:, 0] /= np.sqrt(1.0 - phi * phi)  # start in the stationary distribution
    filtered = lfilter([1.0], [1.0, -phi], innovations, axis=1)
    return np.asarray(filtered) * (sd * np.sqrt(1.0 - phi * phi))

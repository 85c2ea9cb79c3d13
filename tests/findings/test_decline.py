"""The decline test: its error rates measured by seeded Monte Carlo (no training, pure numpy),
and its noise fit checked against the restricted likelihood written out with dense matrices.

Curves (accuracies as fractions), defined here and in docs/report.md:
- rise: 10% at epoch 0, 97% at epoch 12, 99% at epoch 32 (linear in between);
- no decline: the rise, then flat at 99% to the last epoch, plus noise: i.i.d. normal (0.1
  points), AR(1) (0.1 points marginal, lag-1 correlation 0.5 or 0.8), or binomial counts of
  N_test = 1,000 or 10,000 test images (quantised to 1/N_test);
- seed-like: the rise to 99% at epoch 32, then linearly 0.3 points lower at the last epoch, with
  i.i.d. noise of 0.05 points (what the reference's run looks like).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cl_analyze.findings import (
    MIN_EPOCHS_AFTER_PEAK,
    VERDICT_NO_DECLINE,
    VERDICT_NOISE,
    VERDICT_REAL,
    VERDICT_TOO_FEW,
    decline_sentence,
    peak_and_decline,
)
from cl_analyze.findings.noise import PHI_GRID, PHI_UPPER_DROP, fit_noise, simulate_flat

Curve = Callable[[int, np.random.Generator], np.ndarray]


def rise(epochs: np.ndarray) -> np.ndarray:
    early = 0.10 + (0.97 - 0.10) * epochs / 12
    late = 0.97 + 0.02 * (epochs - 12) / 20
    return np.minimum(np.where(epochs <= 12, early, late), 0.99)


def ar1(length: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) with unit marginal variance, written as its recursion."""
    noise = np.empty(length)
    noise[0] = rng.standard_normal()
    for t in range(1, length):
        noise[t] = phi * noise[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal()
    return noise


def iid_plateau(end: int, rng: np.random.Generator) -> np.ndarray:
    return rise(np.arange(end + 1)) + 0.001 * rng.standard_normal(end + 1)


def ar_plateau(phi: float) -> Curve:
    return lambda end, rng: rise(np.arange(end + 1)) + 0.001 * ar1(end + 1, phi, rng)


def binomial_plateau(n_test: int) -> Curve:
    return lambda end, rng: rng.binomial(n_test, rise(np.arange(end + 1))) / n_test


def seed_like(end: int, rng: np.random.Generator) -> np.ndarray:
    epochs = np.arange(end + 1)
    decline = 0.003 * np.clip(epochs - 32, 0, None) / (end - 32)
    return rise(epochs) - decline + 0.0005 * rng.standard_normal(end + 1)


def verdict_rates(curve: Curve, end: int, count: int, n_test: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    verdicts = [
        peak_and_decline(np.arange(end + 1), curve(end, rng), n_test=n_test).verdict
        for _ in range(count)
    ]
    return {v: verdicts.count(v) / count for v in set(verdicts)}


def test_no_decline_is_rarely_called_real_fast() -> None:
    """The default suite's representative: AR(1) noise (phi 0.5) over 60 epochs."""
    rates = verdict_rates(ar_plateau(0.5), 60, 150, n_test=10_000, seed=1)
    assert rates.get(VERDICT_REAL, 0.0) <= 0.05


def test_seed_like_decline_is_detected_fast() -> None:
    rates = verdict_rates(seed_like, 100, 60, n_test=10_000, seed=2)
    assert rates.get(VERDICT_REAL, 0.0) >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("end", [40, 60, 100])
@pytest.mark.parametrize(
    ("name", "curve", "n_test"),
    [
        ("iid", iid_plateau, 10_000),
        ("ar0.5", ar_plateau(0.5), 10_000),
        ("ar0.8", ar_plateau(0.8), 10_000),
        ("binomial1000", binomial_plateau(1_000), 1_000),
        ("binomial10000", binomial_plateau(10_000), 10_000),
    ],
)
def test_false_declines_at_most_five_percent(
    name: str, curve: Curve, n_test: int, end: int
) -> None:
    rates = verdict_rates(curve, end, 1000, n_test=n_test, seed=end)
    print(f"{name} end {end}: {rates}")  # the numbers in docs/report.md (pytest -s)
    assert rates.get(VERDICT_REAL, 0.0) <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("end", [60, 100])
def test_seed_like_detected_at_least_ninety_percent(end: int) -> None:
    rates = verdict_rates(seed_like, end, 1000, n_test=10_000, seed=end)
    print(f"seed-like end {end}: {rates}")
    assert rates.get(VERDICT_REAL, 0.0) >= 0.90


def test_constant_plateaus_are_no_decline() -> None:
    """1,000 plateaus at k/1000: the float mean of equal values may differ from them by an ulp."""
    for k in range(1000):
        accuracy = [0.0] + [k / 1000] * 11
        for n_test in (None, 1000):
            result = peak_and_decline(list(range(12)), accuracy, n_test=n_test)
            assert result.verdict == VERDICT_NO_DECLINE, (k, n_test, result.decline)
    result = peak_and_decline(list(range(12)), [0.0] + [0.235] * 11)
    text = decline_sentence(result)
    assert "-0.00" not in text and "no decline" in text


def test_a_decline_below_one_test_sample_is_no_decline() -> None:
    epochs = np.arange(43)
    accuracy = np.r_[rise(epochs[:33]), np.full(10, 0.9895)]  # peak 0.99, then 0.05 points lower
    result = peak_and_decline(epochs, accuracy, n_test=1000)
    assert result.decline == pytest.approx(0.0005)
    assert result.verdict == VERDICT_NO_DECLINE and result.test is None
    assert "less than one test sample (0.10 points)" in decline_sentence(result)
    # With 10,000 test images, half a point of a thousand is five samples: it is tested.
    assert peak_and_decline(epochs, accuracy, n_test=10_000).verdict != VERDICT_NO_DECLINE


def test_too_few_epochs_after_the_peak() -> None:
    epochs = np.arange(32 + MIN_EPOCHS_AFTER_PEAK)
    accuracy = rise(epochs) - 0.002 * np.clip(epochs - 32, 0, None)
    result = peak_and_decline(epochs, accuracy, n_test=10_000)
    assert result.epochs_after_peak == MIN_EPOCHS_AFTER_PEAK - 1
    assert result.verdict == VERDICT_TOO_FEW and result.test is None


def test_interval_lower_end_is_above_zero_exactly_for_real_declines() -> None:
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(40):
        result = peak_and_decline(np.arange(61), seed_like(60, rng) + 0.0001, n_test=10_000)
        noisy = peak_and_decline(np.arange(61), iid_plateau(60, rng), n_test=10_000)
        for item in (result, noisy):
            if item.test is None:
                continue
            seen.add(item.verdict)
            assert (item.test.excess_low > 0) == (item.verdict == VERDICT_REAL)
            assert item.test.excess_low <= item.test.excess <= item.test.excess_high
            assert 0 < item.test.p_value <= 1
    assert seen == {VERDICT_REAL, VERDICT_NOISE}


def test_real_decline_sentence_states_p_value_and_interval() -> None:
    rng = np.random.default_rng(0)
    result = peak_and_decline(np.arange(101), seed_like(100, rng), n_test=10_000)
    assert result.verdict == VERDICT_REAL and result.test is not None
    text = decline_sentence(result)
    assert "The decline test gives p" in text and "90% interval" in text
    assert "real decline" in text and "-0.00" not in text
    summary = result.to_dict()
    assert summary["test"]["p_value"] == result.test.p_value


def dense_reml(values: np.ndarray) -> tuple[float, float, float, float]:
    """(sd, phi, sd at the upper phi, upper phi): REML over the same grid, written out with the
    dense AR(1) correlation matrix R = phi^|i - j| and a line X = [1, t]."""
    n = len(values)
    X = np.stack([np.ones(n), np.arange(n, dtype=float)], axis=1)
    lags = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    likelihoods, variances = [], []
    for phi in PHI_GRID:
        R = phi**lags
        R_inv = np.linalg.inv(R)
        beta = np.linalg.solve(X.T @ R_inv @ X, X.T @ R_inv @ values)
        residual = values - X @ beta
        variance = residual @ R_inv @ residual / (n - 2)
        likelihoods.append(
            -0.5
            * (
                (n - 2) * np.log(variance)
                + np.linalg.slogdet(R)[1]
                + np.linalg.slogdet(X.T @ R_inv @ X)[1]
            )
        )
        variances.append(variance)
    likelihood = np.array(likelihoods)
    best = int(likelihood.argmax())
    upper = int(np.flatnonzero(likelihood >= likelihood.max() - PHI_UPPER_DROP).max())
    return (
        float(np.sqrt(variances[best])),
        float(PHI_GRID[best]),
        float(np.sqrt(variances[upper])),
        float(PHI_GRID[upper]),
    )


def test_noise_fit_equals_dense_reml() -> None:
    rng = np.random.default_rng(4)
    curves = np.stack(
        [0.98 + 0.0003 * np.arange(40) + 0.002 * ar1(40, phi, rng) for phi in (0.0, 0.5, 0.8)]
    )
    first = np.array([0, 7, 15])
    fitted = fit_noise(curves, first)
    for row in range(3):
        sd, phi, sd_upper, phi_upper = dense_reml(curves[row, first[row] :])
        assert fitted.phi[row] == pytest.approx(phi)
        assert fitted.phi_upper[row] == pytest.approx(phi_upper)
        assert fitted.sd[row] == pytest.approx(sd, rel=1e-6)
        assert fitted.sd_upper[row] == pytest.approx(sd_upper, rel=1e-6)


def test_a_curve_on_a_line_has_no_noise() -> None:
    fitted = fit_noise(0.9 - 0.001 * np.arange(20)[None, :], np.array([3]))
    assert fitted.sd[0] == pytest.approx(0.0, abs=1e-12)


def test_simulated_noise_is_stationary_ar1() -> None:
    curves = simulate_flat(0.002, 0.6, 50, 20_000, np.random.default_rng(0))
    assert curves[:, 0].std() == pytest.approx(0.002, rel=0.03)
    assert curves[:, -1].std() == pytest.approx(0.002, rel=0.03)
    lag1 = np.corrcoef(curves[:, 20], curves[:, 21])[0, 1]
    assert lag1 == pytest.approx(0.6, abs=0.02)

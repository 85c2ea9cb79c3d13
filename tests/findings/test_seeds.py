"""Seeds pooled: grouping by config, t-intervals, the mean curve and its band, Welch comparisons;
checked against formulas written out here and scipy, and the comparison's error rate measured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cl_analyze.findings import SeedGroup, SeedRun, compare_groups, group_replicates, pool_seeds
from cl_analyze.findings.seeds import mean_interval, welch_difference


def run(name: str, seed: int, accuracy: np.ndarray, **config: object) -> SeedRun:
    settings = {"loss": "center", "lr": 0.01, "seed": seed, "device": "cpu", **config}
    return SeedRun(name, settings, np.arange(len(accuracy)), np.asarray(accuracy), 1000)


def test_runs_differing_only_in_seed_and_where_they_ran_are_replicates() -> None:
    curve = np.linspace(0.1, 0.9, 5)
    runs = [
        run("a", 1, curve),
        run("b", 2, curve, device="cuda", data_dir="/data"),
        run("c", 3, curve, epochs=30),  # a longer run of the same training
        run("d", 1, curve, loss="softmax"),
        run("e", 2, curve, loss="softmax"),
        run("f", 1, curve, lr=0.1),
    ]
    groups = group_replicates(runs)
    assert [(label, [r.name for r in members]) for label, members in groups] == [
        ("loss=center, lr=0.01", ["a", "b", "c"]),
        ("loss=softmax, lr=0.01", ["d", "e"]),
        ("loss=center, lr=0.1", ["f"]),
    ]
    assert group_replicates(runs[:3])[0][0] == "loss=center"


def test_mean_interval_is_students_t() -> None:
    values = [0.981, 0.987, 0.979, 0.990]
    interval = mean_interval(values)
    reference = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high))
    # Three peak epochs 2, 3 and 38 of a run recorded for epochs 0..39: t gives -30 to 58.
    wide = mean_interval([2, 3, 38], (0, 39))
    unclipped = stats.ttest_1samp([2, 3, 38], 0).confidence_interval(0.95)
    assert unclipped.low < 0 and unclipped.high > 39
    assert (wide.low, wide.high) == (0, 39)
    single = mean_interval([0.5])
    assert single.mean == 0.5 and math.isnan(single.low) and math.isnan(single.high)


def test_welch_difference_follows_the_welch_satterthwaite_formula() -> None:
    a, b = [0.99, 0.985, 0.992], [0.97, 0.96, 0.975, 0.968]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    difference = welch_difference(a, b)
    assert difference is not None
    assert difference.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (difference.low, difference.high) == pytest.approx(
        (np.mean(a) - np.mean(b) - half, np.mean(a) - np.mean(b) + half)
    )
    assert difference.beyond_spread
    assert welch_difference([1.0], [2.0, 3.0]) is None
    same = welch_difference([1.0, 1.0], [2.0, 2.0])
    assert same is not None and same.low == same.high == -1.0 and same.beyond_spread


def test_pooled_curve_band_and_numbers() -> None:
    rng = np.random.default_rng(0)
    epochs = 40
    base = np.minimum(0.2 + 0.8 * np.arange(epochs) / 10, 0.98)
    curves = [base + 0.004 * rng.standard_normal(epochs) for _ in range(3)]
    # The third seed is still training: 35 epochs. Pooling uses the 35 all of them have.
    runs = [run(f"s{i}", i, curve[: 35 if i == 2 else epochs]) for i, curve in enumerate(curves)]
    group = pool_seeds("center", runs)
    stack = np.stack([curve[:35] for curve in curves])
    assert group.epochs.tolist() == list(range(35))
    np.testing.assert_allclose(group.mean_curve, stack.mean(0))
    half = stats.t.ppf(0.975, 2) * stack.std(0, ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(group.band_high - group.mean_curve, half)
    np.testing.assert_allclose(group.mean_curve - group.band_low, half)
    assert group.peak_accuracy.values == pytest.approx([float(c.max()) for c in stack])
    assert group.peak_epoch.values == pytest.approx([float(c.argmax()) for c in stack])
    assert group.pooled.peak_accuracy == pytest.approx(stack.mean(0).max())
    assert group.pooled.resolution == pytest.approx(1 / 3000)  # 3 seeds x 1,000 test samples
    reached = [float(np.flatnonzero(c >= 0.97)[0]) for c in stack]
    assert group.epochs_to_threshold is not None
    assert group.epochs_to_threshold.values == pytest.approx(reached)
    assert group.never_reached == 0


def groups_of(center_peaks: list[float], softmax_peaks: list[float]) -> tuple[SeedGroup, SeedGroup]:
    def curve(top: float) -> np.ndarray:
        return np.r_[np.linspace(0.2, top, 10), np.full(20, top - 0.002)]

    center = pool_seeds("center", [run(f"c{i}", i, curve(p)) for i, p in enumerate(center_peaks)])
    softmax = pool_seeds(
        "softmax",
        [run(f"s{i}", i, curve(p), loss="softmax") for i, p in enumerate(softmax_peaks)],
    )
    return center, softmax


def test_comparison_says_whether_the_difference_exceeds_the_spread() -> None:
    center, softmax = groups_of([0.990, 0.991, 0.989], [0.980, 0.981, 0.979])
    text = " ".join(compare_groups(center, softmax))
    assert "Peak test accuracy: center 99.00% (95% interval" in text
    assert "the difference, 1.00 points (95% interval" in text
    assert "is larger than the seed-to-seed spread" in text
    center, softmax = groups_of([0.990, 0.980, 0.985], [0.986, 0.979, 0.990])
    text = " ".join(compare_groups(center, softmax))
    assert "Peak test accuracy" in text
    assert (
        "within the seed-to-seed spread: these seeds do not tell them apart"
        in text.split("Decline")[0]
    )
    assert "-0.00" not in text
    # Every seed of both peaks at the same epoch: said once, not weighed.
    assert "Peak epoch: 9.0 epochs for every seed." in text


def test_larger_than_the_spread_is_said_of_equal_groups_about_five_percent_of_the_time() -> None:
    """Three seeds a side, equal means, unequal spreads (normal): the Welch interval's error."""
    rng = np.random.default_rng(7)
    trials = 4000
    false = 0
    for _ in range(trials):
        difference = welch_difference(rng.normal(0, 0.3, 3), rng.normal(0, 0.9, 3))
        assert difference is not None
        false += difference.beyond_spread
    assert false / trials <= 0.06

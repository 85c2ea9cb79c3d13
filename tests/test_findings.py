"""Peak-and-decline definitions and the findings text, checked against formulas written here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import (
    VERDICT_NO_DECLINE,
    VERDICT_NOISE,
    VERDICT_REAL,
    VERDICT_TOO_FEW,
    RunNumbers,
    compare_runs,
    describe_change,
    metrics_at,
    peak_and_decline,
    run_findings,
)
from cl_analyze.findings.numbers import p_value_text, percent, points


def planted_curve(peak: int = 7, epochs: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Rises to 0.985 at ``peak`` then falls 0.2 points per epoch with a small zigzag."""
    epoch = np.arange(epochs + 1)
    rise = 0.1 + (0.985 - 0.1) * epoch / peak
    zigzag = 0.0003 * (-1) ** epoch
    fall = 0.985 - 0.002 * (epoch - peak) + zigzag - 0.0003 * (-1) ** peak
    return epoch, np.where(epoch <= peak, rise, fall)


def test_peak_and_decline_follow_the_formulas() -> None:
    epoch, accuracy = planted_curve()
    result = peak_and_decline(epoch, accuracy, last_k=5, threshold=0.97, n_test=10_000)
    assert result.peak_epoch == 7
    assert result.peak_accuracy == pytest.approx(accuracy[7])
    expected_decline = accuracy[7] - accuracy[-5:].mean()
    assert result.decline == pytest.approx(expected_decline)
    assert result.resolution == pytest.approx(1e-4)
    # 2.6 points down in 13 epochs against a 0.03-point zigzag: as real as a decline gets.
    assert result.verdict == VERDICT_REAL
    assert result.test is not None and result.test.p_value < 0.01
    assert result.test.statistic == pytest.approx(expected_decline / result.test.noise)
    first = int(np.flatnonzero(accuracy >= 0.97)[0])
    assert result.epoch_reaching_threshold == first
    assert result.final_epoch == 20 and result.final_accuracy == pytest.approx(accuracy[-1])


def test_ties_pick_the_earliest_peak_and_unsorted_rows_are_sorted() -> None:
    epoch = np.array([3, 0, 1, 2, 4])
    accuracy = np.array([0.9, 0.1, 0.9, 0.5, 0.8])
    result = peak_and_decline(epoch, accuracy, last_k=2)
    assert result.peak_epoch == 1
    assert result.decline == pytest.approx(0.9 - np.mean([0.9, 0.8]))


def test_peak_at_the_last_epoch_means_no_decline() -> None:
    result = peak_and_decline([0, 1, 2, 3], [0.1, 0.5, 0.7, 0.9])
    assert result.peak_epoch == 3
    assert result.decline == 0.0 and result.verdict == VERDICT_NO_DECLINE
    assert "no decline" in run_findings(result, {}, {})[0]
    assert result.epoch_reaching_threshold is None


def test_fewer_than_k_epochs_after_the_peak_average_only_those() -> None:
    accuracy = np.array([0.1, 0.9, 0.98, 0.95, 0.96])
    result = peak_and_decline(np.arange(5), accuracy, last_k=5)
    assert result.last_k == 2
    assert result.decline == pytest.approx(0.98 - (0.95 + 0.96) / 2)


def test_one_epoch_after_the_peak_is_too_few_to_judge() -> None:
    result = peak_and_decline([0, 1, 2], [0.1, 0.9, 0.8])
    assert result.verdict == VERDICT_TOO_FEW
    assert result.decline == pytest.approx(0.1)
    assert "too few" in run_findings(result, {}, {})[0]


def test_one_epoch_store() -> None:
    result = peak_and_decline([0], [0.11])
    assert (result.peak_epoch, result.final_epoch, result.decline) == (0, 0, 0.0)
    assert result.verdict == VERDICT_NO_DECLINE


def test_a_noisy_flat_tail_is_within_noise() -> None:
    rng = np.random.default_rng(3)
    tail = 0.985 + 0.003 * rng.standard_normal(30)
    accuracy = np.r_[0.5, 0.97, tail]
    result = peak_and_decline(np.arange(len(accuracy)), accuracy, n_test=10_000)
    assert result.verdict == VERDICT_NOISE
    assert result.test is not None and result.test.p_value >= 0.05
    assert result.test.excess_low <= 0
    assert "within noise" in run_findings(result, {}, {})[0]


def test_nan_accuracies_are_ignored_and_bad_options_are_refused() -> None:
    result = peak_and_decline([0, 1, 2], [math.nan, 0.5, 0.4])
    assert result.peak_epoch == 1
    with pytest.raises(CLAnalyzeError, match="last-k"):
        peak_and_decline([0], [0.5], last_k=0)
    with pytest.raises(CLAnalyzeError, match="threshold"):
        peak_and_decline([0], [0.5], threshold=97)
    with pytest.raises(CLAnalyzeError, match="no test accuracy"):
        peak_and_decline([0], [math.nan])


def test_findings_text_states_the_numbers() -> None:
    epoch, accuracy = planted_curve()
    result = peak_and_decline(epoch, accuracy)
    text = " ".join(
        run_findings(result, {"intra_mean": 2.0, "silhouette": 0.8}, {"intra_mean": 3.0})
    )
    assert f"peaks at {100 * accuracy[7]:.2f}% at epoch 7" in text
    assert f"declines by {100 * (accuracy[7] - accuracy[-5:].mean()):.2f} points" in text
    assert result.test is not None
    assert f"{100 * result.test.noise:.2f} points of epoch-to-epoch noise" in text
    assert "so this is a real decline" in text
    assert "the mean intra-class distance rises from 2 to 3 (+50%)" in text
    assert "silhouette" not in text  # missing at the last epoch: not stated


def test_describe_change_words() -> None:
    assert describe_change("x", 1.0, 1.01) == "x stays near 1.01"
    assert describe_change("x", 4.0, 1.0) == "x falls from 4 to 1 (-75%)"
    assert describe_change("x", 0.641, 0.00148) == "x falls from 0.641 to 0.00148 (-99.8%)"


def test_metrics_at_reads_whole_split_rows_only() -> None:
    frame = pd.DataFrame(
        {
            "epoch": [1, 1, 1, 2],
            "split": ["test", "test", "train", "test"],
            "metric": ["intra_mean", "intra_mean", "intra_mean", "intra_mean"],
            "class": ["", "3", "", ""],
            "value": [1.5, 9.0, 7.0, 2.5],
        }
    )
    assert metrics_at(frame, 1) == {"intra_mean": 1.5}
    assert metrics_at(frame, 1, "train") == {"intra_mean": 7.0}


def test_compare_runs_names_the_more_compact_and_separated_run() -> None:
    result = peak_and_decline([0, 1, 2], [0.1, 0.99, 0.98])
    softmax = RunNumbers(
        "softmax", result, {"intra_mean": 3.0, "silhouette": 0.4}, {"intra_mean": 4.0}
    )
    center = RunNumbers(
        "center", result, {"intra_mean": 0.5, "silhouette": 0.9}, {"intra_mean": 0.7}
    )
    text = " ".join(compare_runs([softmax, center]))
    assert "At each run's peak, center is more compact (mean intra-class distance 0.5 vs" in text
    assert "center is better clustered (silhouette 0.9 vs softmax 0.4)" in text
    assert "At the last epoch, center is more compact" in text
    assert "tied: softmax, center" in text  # same peak accuracy
    assert compare_runs([softmax]) == []


def test_compare_runs_reports_ties_and_the_most_of_three() -> None:
    result = peak_and_decline([0, 1], [0.1, 0.5])
    runs = [
        RunNumbers(name, result, {"intra_mean": intra, "silhouette": 0.3}, {})
        for name, intra in (("a", 2.0), ("b", 1.0), ("c", 3.0))
    ]
    text = " ".join(compare_runs(runs))
    assert "b is the most compact (mean intra-class distance 1 vs a 2; c 3)" in text
    assert "all runs have the same silhouette (0.3)" in text


def test_a_plateau_at_the_peak_is_no_decline() -> None:
    result = peak_and_decline(np.arange(6), [0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert result.peak_epoch == 0 and result.decline == 0.0
    assert result.verdict == VERDICT_NO_DECLINE
    assert "stays there through epoch 5: no decline" in run_findings(result, {}, {})[0]


def test_numbers_never_show_negative_zero() -> None:
    assert points(-2.8e-17) == "0.00" and points(0.004) == "0.40" and points(-0.004) == "-0.40"
    assert percent(-1e-9) == "0.00%" and percent(0.989) == "98.90%"
    assert p_value_text(0.0004) == "p < 0.001" and p_value_text(0.0312) == "p = 0.031"


def test_compare_runs_leaves_degenerate_runs_out() -> None:
    result = peak_and_decline([0, 1, 2], [0.1, 0.99, 0.98])
    runs = [
        RunNumbers(name, result, {"silhouette": value}, {})
        for name, value in (("a", 0.5), ("b", 0.6))
    ]
    text = " ".join(compare_runs(runs, left_out=["stuck"]))
    assert "stuck" not in text.split("Left out")[0]
    assert "Left out of the comparison (see the warnings above): stuck." in text
    assert compare_runs(runs[:1], left_out=["stuck"]) == [
        "Left out of the comparison (see the warnings above): stuck."
    ]

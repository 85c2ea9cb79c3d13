"""Degenerate runs: chance level (binomial standard error written out), a non-finite loss,
collapsed features; each on hand-made histories."""

from __future__ import annotations

import math

import numpy as np

from cl_analyze.findings import run_warnings
from cl_analyze.findings.degenerate import (
    KIND_CHANCE,
    KIND_COLLAPSE,
    KIND_LOSS,
    chance_warning,
    collapse_warning,
    loss_warning,
)


def test_chance_is_two_binomial_standard_errors_above_one_over_c() -> None:
    margin = 2 * math.sqrt(0.1 * 0.9 / 1000)  # 10 classes, 1,000 test images: 1.90 points
    just_inside = np.array([0.1, 0.1 + margin - 1e-4, 0.105])
    warning = chance_warning("stuck", just_inside, 10, 1000)
    assert warning is not None and warning.kind == KIND_CHANCE
    assert "within two standard errors (1.90 points on 1000 test samples) of chance" in (
        warning.text
    )
    assert chance_warning("learning", np.array([0.1, 0.1 + margin + 1e-4]), 10, 1000) is None
    # Below chance is no better: still flagged.
    assert chance_warning("worse", np.array([0.02, 0.05]), 10, 1000) is not None


def test_a_loss_that_becomes_nan_or_infinite_is_flagged_with_its_epoch() -> None:
    epochs = np.arange(5)
    fine = {
        "train_loss_ce": np.array([np.nan, 2.0, 1.0, 0.5, 0.4]),  # epoch 0 has no training
        "train_loss_center": np.full(5, np.nan),  # a softmax run never records it
        "test_loss_ce": np.array([2.3, 2.0, 1.0, 0.5, 0.4]),
    }
    assert loss_warning("ok", epochs, fine) is None
    diverged = {**fine, "train_loss_ce": np.array([np.nan, 2.0, np.nan, np.nan, np.nan])}
    warning = loss_warning("run", epochs, diverged)
    assert warning is not None and warning.kind == KIND_LOSS
    assert warning.text == "run diverged: its train_loss_ce is NaN from epoch 2 on."
    center = {**fine, "train_loss_center": np.array([np.nan, 1.0, 0.5, np.inf, 0.2])}
    warning = loss_warning("run", epochs, center)
    assert warning is not None and "train_loss_center is inf from epoch 3" in warning.text
    # Diverged at once: cross-entropy never finite after epoch 0.
    at_once = {**fine, "train_loss_ce": np.full(5, np.nan)}
    assert loss_warning("run", epochs, at_once) is not None


def test_collapsed_features_at_the_last_epoch() -> None:
    norms = {0: 0.01, 1: 5.0, 2: 8.0, 3: 0.05}
    warning = collapse_warning("run", norms)
    assert warning is not None and warning.kind == KIND_COLLAPSE
    assert "at its last epoch, 3, the mean test feature norm is 0.05" in warning.text
    assert collapse_warning("run", {**norms, 3: 0.09}) is None  # 1.1% of the largest
    assert collapse_warning("run", {0: 0.0, 1: 0.0}) is not None  # never left the origin
    assert collapse_warning("run", {}) is None


def test_run_warnings_gathers_all_three() -> None:
    epochs = np.arange(3)
    history = {
        "test_accuracy": np.array([0.1, 0.1, 0.1]),
        "train_loss_ce": np.array([np.nan, np.inf, np.inf]),
    }
    warnings = run_warnings(
        "bad", epochs, history, num_classes=10, n_test=100, feature_norm={0: 1.0, 2: 0.0}
    )
    assert [w.kind for w in warnings] == [KIND_CHANCE, KIND_LOSS, KIND_COLLAPSE]
    assert all(w.run == "bad" for w in warnings)

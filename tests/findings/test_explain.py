"""The decline explained in words: each sentence against numbers planted by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cl_analyze.findings import peak_and_decline
from cl_analyze.findings.explain import compare_dynamics, explain_decline
from cl_analyze.metrics.decline_dynamics import ClassFlips, DeclineDynamics

# A curve with a clear decline after its peak at epoch 3 (a real decline by the test).
EPOCHS = np.arange(40)
CURVE = np.concatenate([[0.5, 0.8, 0.95, 0.99], np.linspace(0.985, 0.95, 36)])
RESULT = peak_and_decline(EPOCHS, CURVE, n_test=10_000)


def planted(**changes: object) -> DeclineDynamics:
    base = DeclineDynamics(
        run="softmax",
        epoch_a=3,
        epoch_b=39,
        samples=10_000,
        lost=61,
        gained=21,
        per_class=[
            ClassFlips("3", 1000, 30, 2, 0.99, 0.962),
            ClassFlips("4", 1000, 5, 5, 0.98, 0.98),
            ClassFlips("8", 1000, 20, 4, 0.97, 0.954),
        ],
        confusions=[("3", "5", 25), ("8", "3", 12), ("3", "8", 5)],
        has_classifier=True,
        norm_a=40.0,
        norm_b=80.0,
        lost_displacement=3.0,
        kept_displacement=1.0,
        lost_boundary_a=0.5,
        kept_boundary_a=4.0,
        lost_near=40,
        train_accuracy_a=0.99,
        train_accuracy_b=0.995,
        test_accuracy_a=0.99,
        test_accuracy_b=0.986,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def binomial_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_flips_classes_and_confusions_are_stated() -> None:
    text = " ".join(explain_decline(planted(), RESULT))
    assert "61 test samples of 10000 went from right to wrong and 21 from wrong to right" in text
    assert "(net -40; test accuracy 99.00% -> 98.60%)" in text
    # Classes by net loss: 3 (-28), 8 (-16); 4 lost nothing net.
    assert "3 (30 lost, 2 gained; 99.00% -> 96.20%), 8 (20 lost, 4 gained" in text
    assert "4 (5 lost" not in text
    assert "read as: 3 -> 5 (25), 8 -> 3 (12), 3 -> 8 (5)" in text


def test_near_boundary_is_named_only_when_the_binomial_test_says_so() -> None:
    near = " ".join(explain_decline(planted(lost_near=40), RESULT))
    p = binomial_tail(40, 61, 0.2)
    assert p < 0.001
    assert "already sat near a boundary: 40 of 61 (66%)" in near and "p < 0.001" in near
    # 14 of 61 (23%) is what chance puts among the closest 20%: no evidence.
    assert binomial_tail(14, 61, 0.2) > 0.05
    far = " ".join(explain_decline(planted(lost_near=14), RESULT))
    assert "no nearer a boundary than chance: 14 of 61 (23%)" in far
    assert f"p = {binomial_tail(14, 61, 0.2):.3f}" in far
    assert "moved a median 3 in feature space, the samples that stayed right 1" in far


def test_norms_gap_and_no_clear_mechanism() -> None:
    text = " ".join(explain_decline(planted(), RESULT))
    assert "The mean test feature norm rises from 40 to 80 (+100%)." in text
    # Gap: 0.99 - 0.99 = 0 at the peak, 0.995 - 0.986 = 0.9 points at the end.
    assert "gap (eval-mode train accuracy minus test accuracy) widened: 0.00 points" in text
    assert "0.90 at the end" in text
    assert "no clear mechanism" not in text
    flat = planted(lost_near=14, norm_b=40.0, train_accuracy_b=0.986)
    flat_text = " ".join(explain_decline(flat, RESULT))
    # Gap 0 at both epochs; the norm unchanged; the lost samples no nearer than chance.
    assert "stayed within one test sample: 0.00 points at the peak, 0.00 at the end" in flat_text
    assert (
        "These numbers show no clear mechanism (not seen: near-boundary samples tipping over,"
        " growing norms, a widening train/test gap)." in flat_text
    )
    # Too few lost samples and no train split: only what was checked is ruled out.
    unknown = planted(lost=3, lost_near=1, norm_b=40.0, train_accuracy_a=None)
    assert "no clear mechanism (not seen: growing norms)." in " ".join(
        explain_decline(unknown, RESULT)
    )
    narrowed = " ".join(explain_decline(planted(train_accuracy_b=0.98), RESULT))
    assert "narrowed: 0.00 points at the peak, -0.60 at the end" in narrowed


def test_no_decline_few_flips_and_no_classifier_say_so() -> None:
    same = planted(epoch_b=3)
    assert explain_decline(same, RESULT) == [
        "The last epoch (3) is the peak: there is no decline to explain."
    ]
    few = " ".join(explain_decline(planted(lost=3, lost_near=3), RESULT))
    assert "Too few samples were lost (3) to tell" in few
    bare = planted(has_classifier=False, lost_near=None, lost_boundary_a=None)
    assert "holds no classifier" in " ".join(explain_decline(bare, RESULT))
    noisy = peak_and_decline(EPOCHS[:6], CURVE[:6], n_test=10_000)  # too few epochs to test
    assert "does not call this decline real" in " ".join(explain_decline(planted(), noisy))


def test_runs_are_compared_number_by_number() -> None:
    center = planted(run="center", lost=12, gained=9, lost_near=2, norm_a=5.0, norm_b=5.5)
    sentences = compare_dynamics([planted(), center])
    text = " ".join(sentences)
    assert "softmax 61 lost / 21 gained, center 12 lost / 9 gained" in text
    assert "softmax 66% of 61, center 17% of 12 (chance 20%)" in text
    assert "softmax 40 -> 80, center 5 -> 5.5" in text
    assert compare_dynamics([planted()]) == []

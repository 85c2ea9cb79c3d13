"""Why accuracy declines after the peak, in words: flips, the classes that lose, margins, norms
and the train/test gap between the peak and the last epoch (numbers: metrics/decline_dynamics).

Each sentence states only what its numbers show; a mechanism is named only when its test says
so, and the paragraph says when none is clear."""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import binomtest

from cl_analyze.findings.decline import VERDICT_NO_DECLINE, VERDICT_REAL, PeakDecline
from cl_analyze.findings.numbers import number, p_value_text, percent, points
from cl_analyze.findings.sentences import STEADY_RELATIVE_CHANGE, describe_change
from cl_analyze.metrics.decline_dynamics import NEAR_QUANTILE, DeclineDynamics

# Fewer lost samples than this cannot tell near-boundary from moved-across.
MIN_LOST_FOR_MECHANISM = 5
NEAR_SIGNIFICANCE = 0.05


def _samples(count: int) -> str:
    return f"{count} test sample" + ("" if count == 1 else "s")


def flips_sentence(d: DeclineDynamics) -> str:
    """'61 test samples went wrong between epoch 32 and epoch 100 and 21 came right (net -40,
    accuracy 98.90% -> 98.50%).'"""
    net = d.gained - d.lost
    return (
        f"Between the peak (epoch {d.epoch_a}) and the last epoch ({d.epoch_b}),"
        f" {_samples(d.lost)} of {d.samples} went from right to wrong and {d.gained} from wrong"
        f" to right (net {net:+d}; test accuracy {percent(d.test_accuracy_a)} ->"
        f" {percent(d.test_accuracy_b)})."
    )


def classes_sentence(d: DeclineDynamics) -> str | None:
    """The classes with the largest net loss and the confusions the lost samples fell into."""
    losing = sorted(
        (c for c in d.per_class if c.lost > c.gained), key=lambda c: (c.gained - c.lost, c.name)
    )
    if not losing:
        return "No class lost more samples than it gained." if d.lost else None
    shown = [
        f"{c.name} ({c.lost} lost, {c.gained} gained; {percent(c.accuracy_a)} ->"
        f" {percent(c.accuracy_b)})"
        for c in losing[:3]
    ]
    sentence = "The classes that lose most: " + ", ".join(shown) + "."
    top = [f"{true} -> {predicted} ({count})" for true, predicted, count in d.confusions[:3]]
    if top:
        sentence += " The lost samples are now read as: " + ", ".join(top) + "."
    return sentence


def boundary_sentence(d: DeclineDynamics) -> tuple[str, bool | None]:
    """Whether the lost samples sat near a boundary at the peak or moved across it; the flag:
    they sat near one (more of them among the closest than chance puts there, binomial test);
    None when it cannot be judged (no classifier, too few lost samples)."""
    if not d.has_classifier or d.lost_near is None:
        return (
            "This run's store holds no classifier (a version-1 store, or one written without"
            " it), so the margins at the peak are unknown: retrain the run with this version"
            " to see whether the lost samples sat near a boundary.",
            None,
        )
    if d.lost < MIN_LOST_FOR_MECHANISM:
        return (
            f"Too few samples were lost ({d.lost}) to tell whether they sat near a boundary.",
            None,
        )
    share = d.lost_near / d.lost
    p = binomtest(d.lost_near, d.lost, NEAR_QUANTILE, alternative="greater").pvalue
    distances = (
        f"median distance to their class's region edge {number(d.lost_boundary_a or 0.0)}"
        f" against {number(d.kept_boundary_a or 0.0)} for the samples right at both epochs"
    )
    closest = f"the {NEAR_QUANTILE:.0%} of correct samples closest to a boundary"
    if p < NEAR_SIGNIFICANCE:
        return (
            f"At the peak the lost samples already sat near a boundary: {d.lost_near} of"
            f" {d.lost} ({share:.0%}) were among {closest}, where chance puts"
            f" {NEAR_QUANTILE:.0%} ({p_value_text(p)}; {distances}).",
            True,
        )
    moved = ""
    if d.lost_displacement is not None and d.kept_displacement is not None:
        moved = (
            f" They moved a median {number(d.lost_displacement)} in feature space, the samples"
            f" that stayed right {number(d.kept_displacement)}."
        )
    return (
        f"At the peak the lost samples sat no nearer a boundary than chance: {d.lost_near} of"
        f" {d.lost} ({share:.0%}) were among {closest} ({p_value_text(p)}; {distances});"
        f" they crossed it by moving.{moved}",
        False,
    )


def norm_sentence(d: DeclineDynamics) -> str:
    return describe_change("The mean test feature norm", d.norm_a, d.norm_b) + "."


def gap_sentence(d: DeclineDynamics) -> tuple[str | None, bool]:
    """The eval-mode train accuracy minus the test accuracy at both epochs; widened when it
    grew by more than one test sample."""
    if d.gap_a is None or d.gap_b is None:
        return None, False
    change = d.gap_b - d.gap_a
    widened = change > 1 / d.samples
    verb = (
        "widened"
        if widened
        else "narrowed"
        if change < -1 / d.samples
        else "stayed within one test sample"
    )
    return (
        f"The train/test gap (eval-mode train accuracy minus test accuracy) {verb}:"
        f" {points(d.gap_a)} points at the peak, {points(d.gap_b)} at the end (train"
        f" {percent(d.train_accuracy_a or 0.0)} -> {percent(d.train_accuracy_b or 0.0)}).",
        widened,
    )


def explain_decline(d: DeclineDynamics, result: PeakDecline) -> list[str]:
    """The section's paragraph for one run, as sentences."""
    if d.epoch_a == d.epoch_b:
        return [f"The last epoch ({d.epoch_b}) is the peak: there is no decline to explain."]
    sentences = []
    if result.verdict == VERDICT_NO_DECLINE:
        sentences.append(
            "Accuracy did not fall by a test sample after the peak: the flips below are"
            " churn, not a decline."
        )
    elif result.verdict != VERDICT_REAL:
        sentences.append(
            f"The decline test does not call this decline real ({result.verdict}): the flips"
            " below may be epoch-to-epoch noise."
        )
    sentences.append(flips_sentence(d))
    classes = classes_sentence(d)
    if classes:
        sentences.append(classes)
    boundary, near = boundary_sentence(d)
    sentences.append(boundary)
    sentences.append(norm_sentence(d))
    gap, widened = gap_sentence(d)
    if gap:
        sentences.append(gap)
    grew = d.norm_b > d.norm_a * (1 + STEADY_RELATIVE_CHANGE)
    if not (near or widened or grew):
        ruled_out = ["growing norms"]
        if near is False:
            ruled_out.insert(0, "near-boundary samples tipping over")
        if gap is not None:
            ruled_out.append("a widening train/test gap")
        sentences.append(
            f"These numbers show no clear mechanism (not seen: {', '.join(ruled_out)})."
        )
    return sentences


def compare_dynamics(runs: Sequence[DeclineDynamics]) -> list[str]:
    """How runs (softmax vs center loss) differ between their peaks and their ends."""
    runs = [d for d in runs if d.epoch_a != d.epoch_b]
    if len(runs) < 2:
        return []
    flips = ", ".join(f"{d.run} {d.lost} lost / {d.gained} gained" for d in runs)
    sentences = [f"Flips from each run's peak to its end: {flips}."]
    near = [d for d in runs if d.lost_near is not None and d.lost]
    if len(near) >= 2:
        shares = ", ".join(
            f"{d.run} {d.lost_near / d.lost:.0%} of {d.lost}"
            for d in near  # lost_near checked above
            if d.lost_near is not None
        )
        sentences.append(
            f"Lost samples that sat among the {NEAR_QUANTILE:.0%} of correct samples closest to a"
            f" boundary at the peak: {shares} (chance {NEAR_QUANTILE:.0%})."
        )
    norms = ", ".join(f"{d.run} {number(d.norm_a)} -> {number(d.norm_b)}" for d in runs)
    sentences.append(f"Mean test feature norm from peak to end: {norms}.")
    gaps = [d for d in runs if d.gap_a is not None and d.gap_b is not None]
    if len(gaps) >= 2:
        listed = ", ".join(
            f"{d.run} {points(d.gap_a or 0.0)} -> {points(d.gap_b or 0.0)}" for d in gaps
        )
        sentences.append(f"Train/test gap (points) from peak to end: {listed}.")
    return sentences

"""Findings written from numbers: pure functions of arrays, configs and tidy metric frames.

``decline`` finds the peak and the decline of a test-accuracy curve and tests the decline
against curves with no decline (``noise`` fits and simulates their noise); ``seeds`` pools runs
that differ only in their seed and compares groups by their seed-to-seed spread; ``degenerate``
flags runs at chance level, diverged or collapsed; ``sentences`` and ``numbers`` write it all
in words. Every definition, with its measured error rate: docs/report.md.
"""

from cl_analyze.findings.decline import (
    DEFAULT_LAST_K,
    DEFAULT_THRESHOLD,
    MIN_EPOCHS_AFTER_PEAK,
    SIGNIFICANCE,
    VERDICT_NO_DECLINE,
    VERDICT_NOISE,
    VERDICT_REAL,
    VERDICT_TOO_FEW,
    DeclineTest,
    PeakDecline,
    decline_test,
    peak_and_decline,
)
from cl_analyze.findings.degenerate import RunWarning, run_warnings
from cl_analyze.findings.numbers import p_value_text, percent, points
from cl_analyze.findings.seeds import (
    Interval,
    SeedGroup,
    SeedRun,
    compare_groups,
    group_comparisons,
    group_differences,
    group_findings,
    group_replicates,
    pool_seeds,
)
from cl_analyze.findings.sentences import (
    METRIC_WORDS,
    RunNumbers,
    compare_runs,
    decline_sentence,
    describe_change,
    geometry_sentence,
    metrics_at,
    run_findings,
    threshold_sentence,
)

__all__ = [
    "DEFAULT_LAST_K",
    "DEFAULT_THRESHOLD",
    "METRIC_WORDS",
    "MIN_EPOCHS_AFTER_PEAK",
    "SIGNIFICANCE",
    "VERDICT_NOISE",
    "VERDICT_NO_DECLINE",
    "VERDICT_REAL",
    "VERDICT_TOO_FEW",
    "DeclineTest",
    "Interval",
    "PeakDecline",
    "RunNumbers",
    "RunWarning",
    "SeedGroup",
    "SeedRun",
    "compare_groups",
    "compare_runs",
    "decline_sentence",
    "decline_test",
    "describe_change",
    "geometry_sentence",
    "group_comparisons",
    "group_differences",
    "group_findings",
    "group_replicates",
    "metrics_at",
    "p_value_text",
    "peak_and_decline",
    "percent",
    "points",
    "pool_seeds",
    "run_findings",
    "run_warnings",
    "threshold_sentence",
]

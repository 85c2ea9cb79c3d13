"""The notebook API: a run's numbers as tidy pandas DataFrames.

    from cl_analyze.analysis import load_metrics
    frame = load_metrics("artifacts/run1")   # epoch, split, metric, class, value

Thin on purpose: each function lives with its concept (``cl_analyze.metrics`` for the
geometry), and this module only gathers what a notebook reaches for.
"""

from cl_analyze.metrics import (
    COLUMNS,
    METRICS_VERSION,
    class_mean_distances,
    export_metrics_csv,
    load_metrics,
)

__all__ = [
    "COLUMNS",
    "METRICS_VERSION",
    "class_mean_distances",
    "export_metrics_csv",
    "load_metrics",
]

"""The notebook API: a run's numbers as tidy pandas DataFrames.

    from cl_analyze.analysis import load_metrics
    frame = load_metrics("artifacts/run1")   # epoch, split, metric, class, value
    lost = flips("artifacts/run1")            # samples right at the peak, wrong at the end
    margins("artifacts/run1", "peak")         # every sample's norm, angle and margins

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
from cl_analyze.metrics.dynamics import flips, margins

__all__ = [
    "COLUMNS",
    "METRICS_VERSION",
    "class_mean_distances",
    "export_metrics_csv",
    "flips",
    "load_metrics",
    "margins",
]

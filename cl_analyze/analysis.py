"""The notebook API: a run's numbers as tidy pandas DataFrames (docs/api.md).

    from cl_analyze.analysis import embeddings_frame, history_frame, load_metrics
    frame = load_metrics("artifacts/run1")   # epoch, split, metric, class, value
    history = history_frame("artifacts/run1")  # epoch x scalars
    points = embeddings_frame("artifacts/run1", "test", 12)  # sample, label, ..., f0, f1
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
from cl_analyze.store import RunStore
from cl_analyze.store.frames import embeddings_frame, history_frame

__all__ = [
    "COLUMNS",
    "METRICS_VERSION",
    "RunStore",
    "class_mean_distances",
    "embeddings_frame",
    "export_metrics_csv",
    "flips",
    "history_frame",
    "load_metrics",
    "margins",
]

"""Metrics of learned features: geometry per split (pure functions on arrays), the exact fast
silhouette, retrieval against the train split, and the per-epoch cache inside a run store.

``silhouette`` is both a module and its function: ``from cl_analyze.metrics.silhouette import
silhouette``."""

from cl_analyze.metrics.cache import (
    COLUMNS,
    METRICS_GROUP,
    METRICS_VERSION,
    export_metrics_csv,
    load_metrics,
)
from cl_analyze.metrics.geometry import MetricValues, circular_std, split_metrics
from cl_analyze.metrics.means import check_finite, class_mean_distances, class_means
from cl_analyze.metrics.retrieval import nearest_class_mean_accuracy, nearest_neighbour_accuracy
from cl_analyze.metrics.silhouette import SilhouetteResult

__all__ = [
    "COLUMNS",
    "METRICS_GROUP",
    "METRICS_VERSION",
    "MetricValues",
    "SilhouetteResult",
    "check_finite",
    "circular_std",
    "class_mean_distances",
    "class_means",
    "export_metrics_csv",
    "load_metrics",
    "nearest_class_mean_accuracy",
    "nearest_neighbour_accuracy",
    "split_metrics",
]

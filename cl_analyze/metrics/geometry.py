"""Feature-geometry metrics of one split's embeddings: pure functions on arrays.

Inputs are ``features`` (N, D) float (any D >= 1), ``labels`` (N,) int in ``[0, num_classes)``
and optionally learned ``centers`` (C, D). A class absent from the split simply has no per-class
values (never NaN); see docs/metrics.md for every definition and degenerate case.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from cl_analyze.metrics.means import as_2d, check_finite, class_mean_distances, class_means
from cl_analyze.metrics.ranking import clustering_scores, rank_scores
from cl_analyze.metrics.retrieval import nearest_class_mean_accuracy, nearest_neighbour_accuracy
from cl_analyze.metrics.silhouette import silhouette

# (metric name, class index or None for the whole split) -> value
MetricValues = dict[tuple[str, int | None], float]


def _weighted(values: dict[int, float], counts: np.ndarray) -> float | None:
    if not values:
        return None
    weights = np.array([counts[k] for k in values], dtype=np.float64)
    return float(np.dot(weights, list(values.values())) / weights.sum())


def _min_mean_offdiagonal(matrix: np.ndarray) -> tuple[float, float] | None:
    if len(matrix) < 2:
        return None
    off = matrix[~np.eye(len(matrix), dtype=bool)]
    return float(off.min()), float(off.mean())


def circular_std(angles: np.ndarray) -> float | None:
    """sqrt(-2 ln R), R the mean resultant length; None when R = 0 (no direction at all)."""
    resultant = float(np.hypot(np.cos(angles).mean(), np.sin(angles).mean()))
    if resultant <= 1e-12:
        return None
    return math.sqrt(max(-2.0 * math.log(min(resultant, 1.0)), 0.0))


def split_metrics(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    centers: np.ndarray | None = None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    where: str = "features",
    device: str | torch.device | None = None,
) -> MetricValues:
    """Every metric of one split. ``reference`` = (train features, train labels) adds the
    retrieval metrics ``ncm_accuracy`` and ``knn_accuracy`` and the metric-learning numbers
    ``map_at_r``, ``r_precision``, ``precision_at_1``, ``nmi`` and ``ami``. Undefined values are
    left out."""
    features = as_2d(features)
    check_finite(features, where)
    labels = np.asarray(labels, dtype=np.int64)
    values: MetricValues = {}
    if len(labels) == 0:
        return values
    x = features.astype(np.float64)
    means, counts = class_means(x, labels, num_classes)
    present = [int(k) for k in np.flatnonzero(counts > 0)]
    offsets = x - means[labels]
    distances = np.sqrt((offsets**2).sum(1))

    # Intra-class compactness, to the class mean and to the learned center.
    intra_mean: dict[int, float] = {}
    intra_rms: dict[int, float] = {}
    for k in present:
        member = distances[labels == k]
        intra_mean[k] = float(member.mean())
        intra_rms[k] = float(np.sqrt((member**2).mean()))
        values["intra_mean", k] = intra_mean[k]
        values["intra_rms", k] = intra_rms[k]
    values["intra_mean", None] = _weighted(intra_mean, counts) or 0.0
    values["intra_rms", None] = _weighted(intra_rms, counts) or 0.0
    if centers is not None:
        centers64 = np.asarray(centers, dtype=np.float64).reshape(num_classes, -1)
        to_center = np.sqrt(((x - centers64[labels]) ** 2).sum(1))
        center_mean = {k: float(to_center[labels == k].mean()) for k in present}
        center_rms = {k: float(np.sqrt((to_center[labels == k] ** 2).mean())) for k in present}
        for k in present:
            values["intra_center_mean", k] = center_mean[k]
        values["intra_center_mean", None] = _weighted(center_mean, counts) or 0.0
        values["intra_center_rms", None] = _weighted(center_rms, counts) or 0.0
        center_norms = np.sqrt((centers64**2).sum(1))
        for k in range(num_classes):
            values["center_norm", k] = float(center_norms[k])
        values["center_norm", None] = float(center_norms.mean())
        center_gaps = np.sqrt(((centers64[:, None] - centers64[None]) ** 2).sum(-1))
        gaps = _min_mean_offdiagonal(center_gaps)
        if gaps is not None:
            values["center_min_distance", None], values["center_mean_distance", None] = gaps

    # Inter-class separation between class means, and the Fisher criterion.
    if len(present) >= 2:
        mean_gaps = class_mean_distances(x, labels, num_classes)[np.ix_(present, present)]
        inter = _min_mean_offdiagonal(mean_gaps)
        assert inter is not None
        values["inter_min", None], values["inter_mean", None] = inter
        widest = max(intra_rms.values())
        if widest > 0:
            values["inter_intra_ratio", None] = inter[0] / widest
        within = float((offsets**2).sum())
        grand = x.mean(0)
        between = float(sum(counts[k] * ((means[k] - grand) ** 2).sum() for k in present))
        if within > 0:
            values["fisher", None] = between / within
        if len(present) < len(labels):
            values["davies_bouldin", None] = float(davies_bouldin_score(x, labels))
            values["calinski_harabasz", None] = float(calinski_harabasz_score(x, labels))
        result = silhouette(features, labels, device=device)
        if result is not None:
            values["silhouette", None] = result.mean
            for k, score in result.per_class(labels).items():
                values["silhouette", k] = score

    # Softmax-feature geometry: norms and directions.
    norms = np.sqrt((x**2).sum(1))
    norm_by_class = {k: float(norms[labels == k].mean()) for k in present}
    values["feature_norm", None] = float(norms.mean())
    for k, value in norm_by_class.items():
        values["feature_norm", k] = value
    cosines: dict[int, float] = {}
    spreads: dict[int, float] = {}
    for k in present:
        member = (labels == k) & (norms > 0)
        direction_norm = float(np.linalg.norm(means[k]))
        if member.any() and direction_norm > 0:
            cosine = x[member] @ (means[k] / direction_norm) / norms[member]
            cosines[k] = float(cosine.mean())
        if x.shape[1] == 2 and member.any():
            spread = circular_std(np.arctan2(x[member, 1], x[member, 0]))
            if spread is not None:
                spreads[k] = spread
    for name, per_class in (("cosine_to_class", cosines), ("angular_spread", spreads)):
        for k, value in per_class.items():
            values[name, k] = value
        overall = _weighted(per_class, counts)
        if overall is not None:
            values[name, None] = overall

    # Retrieval against the training embeddings.
    if reference is not None:
        reference_features = as_2d(reference[0])
        reference_labels = np.asarray(reference[1], dtype=np.int64)
        if len(reference_labels):
            values["ncm_accuracy", None] = nearest_class_mean_accuracy(
                reference_features, reference_labels, features, labels, num_classes
            )
            values["knn_accuracy", None] = nearest_neighbour_accuracy(
                reference_features, reference_labels, features, labels
            )
            ranked = rank_scores(reference_features, reference_labels, features, labels)
            if ranked is not None:
                values["map_at_r", None] = ranked.map_at_r
                values["r_precision", None] = ranked.r_precision
                values["precision_at_1", None] = ranked.precision_at_1
        clustered = clustering_scores(x, labels)
        if clustered is not None:
            values["nmi", None], values["ami", None] = clustered
    return values

"""Retrieval of test embeddings against the train embeddings."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cl_analyze.metrics.means import as_2d, class_means


def nearest_neighbour_accuracy(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
) -> float:
    """k-NN (k=1) accuracy = precision@1 of ``queries`` against ``reference`` (exact, KD-tree)."""
    tree = cKDTree(as_2d(reference).astype(np.float64))
    _, nearest = tree.query(as_2d(queries).astype(np.float64), k=1)
    return float((np.asarray(reference_labels)[nearest] == np.asarray(query_labels)).mean())


def nearest_class_mean_accuracy(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
    num_classes: int,
) -> float:
    """Accuracy of assigning each query to the nearest reference class mean."""
    means, counts = class_means(reference, reference_labels, num_classes)
    present = np.flatnonzero(counts > 0)
    queries64 = as_2d(queries).astype(np.float64)
    distances = ((queries64[:, None, :] - means[present][None, :, :]) ** 2).sum(-1)
    predicted = present[distances.argmin(1)]
    return float((predicted == np.asarray(query_labels)).mean())

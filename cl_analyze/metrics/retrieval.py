"""Retrieval of test embeddings against the train embeddings."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from cl_analyze.metrics.means import as_2d, class_means


def nearest_neighbours(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query's nearest reference point (exact, float64, KD-tree). Exact ties go
    to the lowest index, as in scikit-learn's brute-force search and pytorch-metric-learning
    (a KD-tree alone returns whichever tied point its traversal meets first)."""
    points = as_2d(reference).astype(np.float64)
    targets = as_2d(queries).astype(np.float64)
    if len(points) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    tree = cKDTree(points)
    distance, index = tree.query(targets, k=2)
    nearest = np.asarray(index[:, 0], dtype=np.int64)
    for row in np.flatnonzero(distance[:, 1] == distance[:, 0]):
        # Slightly wider than the tie: the ball compares squared radii, which may round down.
        ball = np.asarray(tree.query_ball_point(targets[row], r=distance[row, 0] * (1 + 1e-9)))
        squared = ((points[ball] - targets[row]) ** 2).sum(1)
        nearest[row] = int(ball[squared == squared.min()].min())
    return nearest


def nearest_neighbour_accuracy(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
) -> float:
    """k-NN (k=1) accuracy = precision@1 of ``queries`` against ``reference``."""
    nearest = nearest_neighbours(reference, queries)
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

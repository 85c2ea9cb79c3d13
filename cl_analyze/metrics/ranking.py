"""Metric-learning numbers of test queries against train references, as pytorch-metric-learning's
``AccuracyCalculator`` defines them (``ref_includes_query=False``, ``avg_of_avgs=False``):
MAP@R, R-precision and precision@1 by rank; NMI and AMI of a k-means clustering of the queries.

Computed here, exactly, rather than through pytorch-metric-learning: it needs faiss for its
default k-NN and k-means, ranks with float32 ``|a|^2 + |b|^2 - 2ab`` distances (which cancel for
features far from the origin) and breaks ties in whatever order its search returns. Here the
distances are float64 direct differences and ties go to the lowest reference index, as in
``retrieval.nearest_neighbours``; the tests compare both on well-conditioned data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from cl_analyze.metrics.means import as_2d

# One block of queries at a time: at most this many neighbours (indices and distances, 64 MB),
# or float64 distances of the brute-force path.
_BLOCK_VALUES = 4_000_000


@dataclass(frozen=True)
class RankScores:
    """Means over the queries whose class has at least one reference (the others are left out,
    as pytorch-metric-learning leaves out its "lone" queries); None when there is none."""

    map_at_r: float
    r_precision: float
    precision_at_1: float


def _squared_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    # Direct differences, one dimension at a time: no cancellation, no (Q, N, D) temporary.
    total = np.zeros((len(queries), len(reference)))
    for d in range(reference.shape[1]):
        total += (queries[:, d, None] - reference[None, :, d]) ** 2
    return total


def _top_r_in_rank_order(distances: np.ndarray, r: int) -> np.ndarray:
    """(Q, r) reference indices of each row's r nearest, nearest first; ties (also at the r-th
    place) go to the lowest index."""
    kth = np.partition(distances, r - 1, axis=1)[:, r - 1 : r]
    closer = distances < kth
    tied = distances == kth
    # Of the points tied at the r-th distance, the lowest indices fill the remaining places.
    room = r - closer.sum(1, keepdims=True)
    chosen = closer | (tied & (np.cumsum(tied, axis=1) <= room))
    index = np.nonzero(chosen)[1].reshape(len(distances), r)  # ascending index in each row
    order = np.argsort(np.take_along_axis(distances, index, axis=1), axis=1, kind="stable")
    return np.take_along_axis(index, order, axis=1)


def _brute_scores(rows: np.ndarray, points: np.ndarray, is_own: np.ndarray, r: int) -> np.ndarray:
    """(Q, 3) AP@R, R-precision and precision@1 of each row from its full ranking: the path for
    rows with a relevant and an irrelevant point at equal distance (ties to the lowest index)."""
    nearest = _top_r_in_rank_order(_squared_distances(rows, points), r)
    relevant = is_own[nearest]
    precision = np.cumsum(relevant, axis=1) / np.arange(1, r + 1)
    return np.stack(
        [(precision * relevant).sum(1) / r, relevant.sum(1) / r, relevant[:, 0].astype(float)],
        axis=1,
    )


def _tree_scores(
    rows: np.ndarray, points: np.ndarray, is_own: np.ndarray, r: int, everyone: cKDTree
) -> np.ndarray:
    """(Q, 3) as ``_brute_scores``, from a KD-tree's R + 1 nearest of each row (exact float64
    distances; scipy's tree, rather than brute force with a partial sort: 2-5x less time for
    10,000 queries against 60,000 2-D points, benchmarks/bench_ranking.py). A row with two equal
    distances among them is ranked by brute force, since the tree orders ties as it meets them."""
    k = min(r + 1, len(points))
    distances, index = everyone.query(rows, k=k, workers=-1)
    distances = np.asarray(distances).reshape(len(rows), k)
    nearest = np.asarray(index, dtype=np.int64).reshape(len(rows), k)[:, :r]
    relevant = is_own[nearest]
    precision = np.cumsum(relevant, axis=1) / np.arange(1, r + 1)
    result = np.stack(
        [(precision * relevant).sum(1) / r, relevant.sum(1) / r, relevant[:, 0].astype(float)],
        axis=1,
    )
    tied = np.flatnonzero((np.diff(distances, axis=1) == 0).any(axis=1))
    block = max(1, _BLOCK_VALUES // len(points))
    for start in range(0, len(tied), block):
        some = tied[start : start + block]
        result[some] = _brute_scores(rows[some], points, is_own, r)
    return result


def rank_scores(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
) -> RankScores | None:
    """MAP@R, R-precision and precision@1 of ``queries`` against ``reference``. R for a query is
    the number of references of its class; MAP@R = mean over queries of
    (1/R) sum_{i <= R} P(i) rel(i), R-precision = (relevant among the R nearest) / R."""
    points = as_2d(reference).astype(np.float64)
    targets = as_2d(queries).astype(np.float64)
    point_labels = np.asarray(reference_labels, dtype=np.int64)
    target_labels = np.asarray(query_labels, dtype=np.int64)
    everyone = cKDTree(points)
    sums = np.zeros(3)
    counted = 0
    for label in np.unique(target_labels):
        is_own = point_labels == label
        if not is_own.any():
            continue
        r = int(is_own.sum())
        members = np.flatnonzero(target_labels == label)
        block = max(1, _BLOCK_VALUES // (r + 1))
        for start in range(0, len(members), block):
            rows = targets[members[start : start + block]]
            sums += _tree_scores(rows, points, is_own, r, everyone).sum(0)
            counted += len(rows)
    if counted == 0:
        return None
    means = sums / counted
    return RankScores(float(means[0]), float(means[1]), float(means[2]))


def cluster_labels(features: np.ndarray, num_clusters: int, *, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, one k-means++ start as pytorch-metric-learning's faiss k-means,
    fixed seed) cluster of each point: the same epoch always gets the same clustering."""
    model = KMeans(n_clusters=num_clusters, n_init=1, random_state=seed)
    return np.asarray(model.fit_predict(as_2d(features).astype(np.float64)))


def clustering_scores(features: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """(NMI, AMI) between the labels and a k-means clustering into as many clusters as there are
    labels present (pytorch-metric-learning's NMI/AMI); None with fewer than two classes or
    fewer points than classes."""
    labels = np.asarray(labels, dtype=np.int64)
    num_clusters = len(np.unique(labels))
    if num_clusters < 2 or len(labels) <= num_clusters:
        return None
    clusters = cluster_labels(features, num_clusters)
    return (
        float(normalized_mutual_info_score(labels, clusters)),
        float(adjusted_mutual_info_score(labels, clusters)),
    )

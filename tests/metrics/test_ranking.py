"""MAP@R, R-precision, precision@1, NMI and AMI against a full ranking written out here, hand-placed
points, scikit-learn and (when installed) pytorch-metric-learning, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from cl_analyze.metrics import split_metrics
from cl_analyze.metrics.ranking import clustering_scores, rank_scores


def blobs(
    n: int, classes: int, spread: float, seed: int, dim: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = np.random.default_rng(99).normal(0, 3, (classes, dim))
    return (centres[labels] + rng.normal(0, spread, (n, dim))).astype(np.float32), labels


def ranked_by_hand(
    reference: np.ndarray, reference_labels: np.ndarray, queries: np.ndarray, labels: np.ndarray
) -> tuple[float, float, float]:
    """The definitions, one query at a time, from a full stable sort of float64 distances."""
    distances = cdist(queries.astype(np.float64), reference.astype(np.float64))
    aps, rps, p1s = [], [], []
    for row, label in enumerate(labels):
        r = int((reference_labels == label).sum())
        order = np.argsort(distances[row], kind="stable")[:r]
        relevant = reference_labels[order] == label
        precision_at = np.cumsum(relevant) / np.arange(1, r + 1)
        aps.append(float((precision_at * relevant).sum() / r))
        rps.append(float(relevant.sum() / r))
        p1s.append(float(relevant[0]))
    return float(np.mean(aps)), float(np.mean(rps)), float(np.mean(p1s))


@pytest.mark.parametrize("spread", [0.3, 1.5, 4.0])  # separated, overlapping, nearly random
def test_rank_scores_match_the_definition(spread: float) -> None:
    reference, reference_labels = blobs(900, 5, spread, seed=1)
    queries, labels = blobs(200, 5, spread, seed=2)
    scores = rank_scores(reference, reference_labels, queries, labels)
    assert scores is not None
    expected = ranked_by_hand(reference, reference_labels, queries, labels)
    got = (scores.map_at_r, scores.r_precision, scores.precision_at_1)
    assert got == pytest.approx(expected, abs=1e-12)


def test_rank_scores_with_ties_go_to_the_lowest_index() -> None:
    # A grid: many references at exactly equal distances from each query.
    grid = np.array([(x, y) for x in range(6) for y in range(6)], dtype=np.float32)
    grid_labels = (np.arange(36) * 7) % 3
    queries = grid[::5] + np.float32(0.5)
    labels = np.arange(len(queries)) % 3
    scores = rank_scores(grid, grid_labels, queries, labels)
    assert scores is not None
    expected = ranked_by_hand(grid, grid_labels, queries, labels)
    assert (scores.map_at_r, scores.r_precision, scores.precision_at_1) == pytest.approx(expected)


def test_rank_scores_by_hand() -> None:
    # One query at 0 of class 0; references of class 0 at 1 and 3, of class 1 at 2 and 9.
    reference = np.array([[1.0], [2.0], [3.0], [9.0]])
    reference_labels = np.array([0, 1, 0, 1])
    scores = rank_scores(reference, reference_labels, np.array([[0.0]]), np.array([0]))
    assert scores is not None
    # R = 2; ranking: relevant, irrelevant. AP@R = (1/1) / 2; R-precision = 1/2; P@1 = 1.
    assert (scores.map_at_r, scores.r_precision, scores.precision_at_1) == (0.5, 0.5, 1.0)
    # A query whose class has no reference is left out; none at all gives None.
    assert rank_scores(reference, reference_labels, np.array([[0.0]]), np.array([2])) is None


def test_clustering_scores_are_sklearns_on_a_seeded_kmeans() -> None:
    points, labels = blobs(600, 4, 1.5, seed=3)
    nmi, ami = clustering_scores(points, labels) or (np.nan, np.nan)
    clusters = KMeans(n_clusters=4, n_init=1, random_state=0).fit_predict(points.astype(float))
    assert nmi == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert ami == pytest.approx(adjusted_mutual_info_score(labels, clusters))
    separated, separated_labels = blobs(600, 4, 0.05, seed=3)
    assert clustering_scores(separated, separated_labels) == pytest.approx((1.0, 1.0))
    assert clustering_scores(points, np.zeros(600, dtype=int)) is None


def test_split_metrics_reports_them_for_the_queries_only() -> None:
    reference, reference_labels = blobs(400, 3, 1.0, seed=4)
    queries, labels = blobs(100, 3, 1.0, seed=5)
    values = split_metrics(queries, labels, 3, reference=(reference, reference_labels))
    expected = ranked_by_hand(reference, reference_labels, queries, labels)
    got = (values["map_at_r", None], values["r_precision", None], values["precision_at_1", None])
    assert got == pytest.approx(expected)
    assert values["precision_at_1", None] == pytest.approx(values["knn_accuracy", None])
    assert {"nmi", "ami"} <= {name for name, _ in values}
    alone = split_metrics(reference, reference_labels, 3)
    assert not {"map_at_r", "r_precision", "precision_at_1", "nmi", "ami"} & {n for n, _ in alone}


def test_against_pytorch_metric_learning() -> None:
    """The reference implementation, on well-conditioned data (features near the origin: its
    float32 |a|^2 + |b|^2 - 2ab distances lose digits far from it)."""
    pytest.importorskip(
        "pytorch_metric_learning", reason="pip install 'cl-analyze[metric-learning]'"
    )
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    reference, reference_labels = blobs(1500, 6, 1.2, seed=6, dim=3)
    queries, labels = blobs(400, 6, 1.2, seed=7, dim=3)
    clusters: list[np.ndarray] = []

    def kmeans(x: torch.Tensor, k: int) -> torch.Tensor:
        found = KMeans(n_clusters=k, n_init=1, random_state=0).fit_predict(x.double().numpy())
        clusters.append(found)
        return torch.from_numpy(found)

    calculator = AccuracyCalculator(
        include=("mean_average_precision_at_r", "r_precision", "precision_at_1", "NMI", "AMI"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
        kmeans_func=kmeans,
        device=torch.device("cpu"),
    )
    reference_pml = calculator.get_accuracy(
        torch.from_numpy(queries),
        torch.from_numpy(labels),
        torch.from_numpy(reference),
        torch.from_numpy(reference_labels),
    )
    values = split_metrics(queries, labels, 6, reference=(reference, reference_labels))
    assert values["map_at_r", None] == pytest.approx(
        reference_pml["mean_average_precision_at_r"], abs=1e-6
    )
    assert values["r_precision", None] == pytest.approx(reference_pml["r_precision"], abs=1e-6)
    assert values["precision_at_1", None] == pytest.approx(reference_pml["precision_at_1"])
    assert values["nmi", None] == pytest.approx(reference_pml["NMI"])
    assert values["ami", None] == pytest.approx(reference_pml["AMI"])
    assert 0.2 < reference_pml["mean_average_precision_at_r"] < 0.95  # neither trivial nor random

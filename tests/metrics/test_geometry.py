"""Metrics against independent computations: hand-placed points, scikit-learn, brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import circstd
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
)

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics import (
    class_mean_distances,
    nearest_class_mean_accuracy,
    nearest_neighbour_accuracy,
    split_metrics,
)
from cl_analyze.metrics.silhouette import silhouette


def blobs(
    n: int, dim: int, classes: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 10, (classes, dim))
    points = centres[labels] + rng.normal(0, spread, (n, dim))
    return points.astype(np.float32), labels


# --- hand-placed points ------------------------------------------------------------------------


def square_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class 0: (0,0),(2,0); class 1: (10,0),(10,4),(10,2) -> means (1,0) and (10,2)."""
    points = np.array([[0, 0], [2, 0], [10, 0], [10, 4], [10, 2]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 1])
    centers = np.array([[0, 0], [10, 0]], dtype=np.float32)
    return points, labels, centers


def test_compactness_and_separation_on_hand_placed_points() -> None:
    points, labels, centers = square_pair()
    values = split_metrics(points, labels, 2, centers=centers)
    # Class 0: both points 1 from (1,0). Class 1: distances 2, 2, 0 from (10,2).
    assert values["intra_mean", 0] == pytest.approx(1.0)
    assert values["intra_mean", 1] == pytest.approx(4 / 3)
    assert values["intra_rms", 1] == pytest.approx(math.sqrt(8 / 3))
    assert values["intra_mean", None] == pytest.approx((2 * 1 + 3 * 4 / 3) / 5)
    assert values["intra_rms", None] == pytest.approx((2 * 1 + 3 * math.sqrt(8 / 3)) / 5)
    # To the learned centers: class 0 distances 0, 2; class 1 distances 0, 4, 2.
    assert values["intra_center_mean", 0] == pytest.approx(1.0)
    assert values["intra_center_mean", 1] == pytest.approx(2.0)
    rms = (2 * math.sqrt(2) + 3 * math.sqrt(20 / 3)) / 5
    assert values["intra_center_rms", None] == pytest.approx(rms)
    gap = math.hypot(9, 2)
    assert values["inter_min", None] == pytest.approx(gap)
    assert values["inter_mean", None] == pytest.approx(gap)
    assert values["inter_intra_ratio", None] == pytest.approx(gap / math.sqrt(8 / 3))
    assert values["center_min_distance", None] == pytest.approx(10.0)
    assert values["center_norm", 1] == pytest.approx(10.0)
    assert values["center_norm", None] == pytest.approx(5.0)
    # Fisher: grand mean (32/5, 6/5); S_B trace and S_W trace written out.
    grand = np.array([32 / 5, 6 / 5])
    between = 2 * np.sum((np.array([1, 0]) - grand) ** 2) + 3 * np.sum(
        (np.array([10, 2]) - grand) ** 2
    )
    assert values["fisher", None] == pytest.approx(between / (2 + 8))


def test_norms_and_directions_on_hand_placed_points() -> None:
    points, labels, _ = square_pair()
    values = split_metrics(points, labels, 2)
    norms = np.linalg.norm(points.astype(np.float64), axis=1)
    assert values["feature_norm", None] == pytest.approx(norms.mean())
    assert values["feature_norm", 1] == pytest.approx(norms[2:].mean())
    # Class 0 lies on the +x axis: cosine 1 (the origin point has no direction), spread 0.
    assert values["cosine_to_class", 0] == pytest.approx(1.0)
    assert values["angular_spread", 0] == pytest.approx(0.0, abs=1e-7)
    direction = np.array([10, 2]) / math.hypot(10, 2)
    expected = (points[2:] @ direction / norms[2:]).mean()
    assert values["cosine_to_class", 1] == pytest.approx(expected)
    angles = np.arctan2(points[2:, 1], points[2:, 0])
    assert values["angular_spread", 1] == pytest.approx(circstd(angles), rel=1e-6)
    assert "center_norm" not in {name for name, _ in values}


def test_class_mean_distances_matches_scipy() -> None:
    points, labels = blobs(500, 5, 4, 1.0, seed=1)
    means = np.stack([points[labels == k].astype(np.float64).mean(0) for k in range(4)])
    matrix = class_mean_distances(points, labels, 5)
    np.testing.assert_allclose(matrix[:4, :4], cdist(means, means), rtol=1e-9, atol=1e-9)
    assert np.isnan(matrix[4]).all()  # class 4 is absent


# --- silhouette ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dim", "spread"), [(2, 0.5), (2, 8.0), (5, 2.0), (5, 20.0), (1, 3.0), (12, 9.0)]
)
def test_silhouette_equals_sklearn(dim: int, spread: float) -> None:
    points, labels = blobs(3000, dim, 7, spread, seed=dim)
    result = silhouette(points, labels)
    assert result is not None
    np.testing.assert_allclose(result.samples, silhouette_samples(points, labels), atol=1e-5)
    assert result.mean == pytest.approx(silhouette_score(points, labels), abs=1e-5)
    reference = silhouette_samples(points, labels)
    for k, value in result.per_class(labels).items():
        assert value == pytest.approx(reference[labels == k].mean(), abs=1e-5)


def test_silhouette_large_features_stay_exact_in_float32() -> None:
    # Far from the origin and tightly packed: where ||a||^2 + ||b||^2 - 2ab would cancel.
    points, labels = blobs(2000, 2, 5, 0.05, seed=3)
    points = (points + np.float32(500.0)).astype(np.float32)
    result = silhouette(points, labels)
    assert result is not None
    np.testing.assert_allclose(result.samples, silhouette_samples(points, labels), atol=1e-5)


def test_silhouette_singletons_identical_points_and_single_class() -> None:
    points, labels = blobs(200, 2, 3, 1.0, seed=4)
    labels[0] = 9  # a class with one sample
    result = silhouette(points, labels)
    assert result is not None
    assert result.samples[0] == 0.0
    np.testing.assert_allclose(result.samples, silhouette_samples(points, labels), atol=1e-5)

    same = np.ones((50, 2), dtype=np.float32)
    two = np.arange(50) % 2
    result = silhouette(same, two)
    assert result is not None
    np.testing.assert_array_equal(result.samples, silhouette_samples(same, two))
    assert result.mean == 0.0

    assert silhouette(points, np.zeros(len(points), dtype=int)) is None


def test_silhouette_of_float64_far_from_the_origin_is_exact() -> None:
    # An offset of 1e4 in float64: cast to float32 first, coordinates round to ~1e-3 and the
    # silhouette of these tight classes is off by far more than 1e-5; centred in float64 first,
    # it is exact. Reference: scipy's cdist (direct differences in float64, no ||a||^2 + ||b||^2
    # - 2ab cancellation) into scikit-learn's silhouette on precomputed distances.
    points, labels = blobs(1500, 2, 5, 1.0, seed=11)
    shifted = points.astype(np.float64) * 0.001 + 1e4  # classes 0.01 apart, spread 0.001
    reference = silhouette_samples(cdist(shifted, shifted), labels, metric="precomputed")
    rounded = silhouette(shifted.astype(np.float32), labels)
    assert rounded is not None and np.abs(rounded.samples - reference).max() > 0.05
    result = silhouette(shifted, labels)
    assert result is not None
    np.testing.assert_allclose(result.samples, reference, atol=1e-5)
    values = split_metrics(shifted, labels, 5)
    assert values["silhouette", None] == pytest.approx(reference.mean(), abs=1e-5)


def test_every_sample_its_own_class_has_no_silhouette() -> None:
    points, _ = blobs(12, 2, 3, 1.0, seed=12)
    own = np.arange(12)
    with pytest.raises(ValueError):  # scikit-learn: undefined for n_labels == n_samples
        silhouette_score(points, own)
    assert silhouette(points, own) is None
    values = split_metrics(points, own, 12)
    assert "silhouette" not in {name for name, _ in values}
    assert all(np.isfinite(v) for v in values.values())


def test_nearest_neighbour_ties_go_to_the_lowest_index_as_in_sklearn() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(13)
    # Integer grid points, many duplicated with different labels; queries on and between them:
    # most queries have several reference points at exactly the same distance.
    train = rng.integers(0, 4, (300, 2)).astype(np.float32)
    train_labels = rng.integers(0, 5, 300)
    test = (rng.integers(0, 4, (200, 2)) + rng.choice([0.0, 0.5], (200, 2))).astype(np.float32)
    test_labels = rng.integers(0, 5, 200)
    brute = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train, train_labels)
    expected = (brute.predict(test) == test_labels).mean()
    assert nearest_neighbour_accuracy(train, train_labels, test, test_labels) == pytest.approx(
        expected
    )
    # Hand-placed: (0,0) is 1 from (1,0) [index 1] and from (0,1) [index 2]: index 1 wins.
    reference = np.array([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]])
    assert nearest_neighbour_accuracy(reference, np.array([0, 1, 2]), np.zeros((1, 2)), [1]) == 1


# --- scikit-learn scores, retrieval --------------------------------------------------------------


def test_davies_bouldin_calinski_harabasz_match_sklearn() -> None:
    points, labels = blobs(800, 5, 6, 2.0, seed=5)
    values = split_metrics(points, labels, 6)
    assert values["davies_bouldin", None] == pytest.approx(davies_bouldin_score(points, labels))
    ch = calinski_harabasz_score(points, labels)
    assert values["calinski_harabasz", None] == pytest.approx(ch, rel=1e-5)


def test_retrieval_against_brute_force() -> None:
    train, train_labels = blobs(1500, 5, 4, 6.0, seed=6)
    test, test_labels = blobs(400, 5, 4, 6.0, seed=6)
    distances = cdist(test.astype(np.float64), train.astype(np.float64))
    knn = (train_labels[distances.argmin(1)] == test_labels).mean()
    means = np.stack([train[train_labels == k].astype(np.float64).mean(0) for k in range(4)])
    ncm = (cdist(test.astype(np.float64), means).argmin(1) == test_labels).mean()
    assert nearest_neighbour_accuracy(train, train_labels, test, test_labels) == pytest.approx(knn)
    assert nearest_class_mean_accuracy(train, train_labels, test, test_labels, 4) == pytest.approx(
        ncm
    )
    values = split_metrics(test, test_labels, 4, reference=(train, train_labels))
    assert values["knn_accuracy", None] == pytest.approx(knn)
    assert values["ncm_accuracy", None] == pytest.approx(ncm)
    assert 0.0 < knn < 1.0  # the blobs overlap: a real test, not a trivially perfect one


# --- degenerate input --------------------------------------------------------------------------


def test_absent_class_has_no_per_class_values() -> None:
    points, labels = blobs(300, 2, 3, 1.0, seed=7)
    values = split_metrics(points, labels, 5)
    classes = {k for _, k in values if k is not None}
    assert classes == {0, 1, 2}
    assert all(np.isfinite(v) for v in values.values())


def test_one_class_and_identical_points_give_finite_values() -> None:
    single = split_metrics(np.ones((10, 3), dtype=np.float32), np.zeros(10, dtype=int), 2)
    assert single["intra_mean", None] == 0.0
    assert "silhouette" not in {name for name, _ in single}
    assert "inter_min" not in {name for name, _ in single}
    same = split_metrics(np.ones((10, 2), dtype=np.float32), np.arange(10) % 2, 2)
    assert same["silhouette", None] == 0.0
    assert "fisher" not in {name for name, _ in same}  # 0 / 0: left out, not NaN
    assert all(np.isfinite(v) for v in same.values())


def test_non_finite_features_raise_with_where() -> None:
    points, labels = blobs(20, 2, 2, 1.0, seed=8)
    points[3, 1] = np.nan
    with pytest.raises(CLAnalyzeError, match="epoch 4 split test"):
        split_metrics(points, labels, 2, where="run epoch 4 split test")


def test_silhouette_accepts_tensors() -> None:
    import torch

    points, labels = blobs(1500, 3, 4, 3.0, seed=9)
    result = silhouette(torch.from_numpy(points), torch.from_numpy(labels))
    assert result is not None
    np.testing.assert_allclose(result.samples, silhouette_samples(points, labels), atol=1e-5)


@pytest.mark.gpu
def test_silhouette_on_cuda_equals_sklearn() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    points, labels = blobs(20000, 2, 10, 3.0, seed=10)
    result = silhouette(torch.from_numpy(points).cuda(), labels)
    assert result is not None
    np.testing.assert_allclose(result.samples, silhouette_samples(points, labels), atol=1e-5)

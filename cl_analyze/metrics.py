"""Feature-geometry metrics of one split's embeddings: pure functions on arrays.

Inputs are ``features`` (N, D) float (any D >= 1), ``labels`` (N,) int in ``[0, num_classes)``
and optionally learned ``centers`` (C, D). A class absent from the split simply has no per-class
values (never NaN); see docs/metrics.md for every definition and degenerate case.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from cl_analyze.errors import CLAnalyzeError

# Block shape of the pairwise-distance pass: big enough to amortise dispatch, small enough
# that one (rows x columns) float32 block stays a few MiB on CPU.
CPU_BLOCK = (1024, 1024)
CUDA_BLOCK = (8192, 8192)
# Up to this feature dimension, distances are built from per-dimension elementwise ops.
DIRECT_MAX_DIM = 8
# Relative slack on the pruning test: exact bounds, compared in floating point.
PRUNE_SLACK = 1e-6

# (metric name, class index or None for the whole split) -> value
MetricValues = dict[tuple[str, int | None], float]


@dataclass(frozen=True)
class SilhouetteResult:
    """``samples`` (N,) float64 as ``sklearn.metrics.silhouette_samples``; ``mean`` its mean."""

    mean: float
    samples: np.ndarray

    def per_class(self, labels: np.ndarray) -> dict[int, float]:
        labels = np.asarray(labels)
        return {int(k): float(self.samples[labels == k].mean()) for k in np.unique(labels)}


def check_finite(features: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(features)):
        bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
        raise CLAnalyzeError(
            f"{where}: {bad} feature vectors are NaN or infinite (the training diverged?):"
            " lower the learning rate or center-loss weight and retrain"
        )


def _as_2d(features: np.ndarray) -> np.ndarray:
    array = np.asarray(features)
    return array.reshape(len(array), -1)


def class_means(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) float64 class means (NaN rows for absent classes) and (C,) class sizes."""
    features = _as_2d(features).astype(np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    sums = np.zeros((num_classes, features.shape[1]))
    np.add.at(sums, labels, features)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means, counts


def class_mean_distances(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) Euclidean distances between class means; NaN rows/columns for absent classes."""
    means, _ = class_means(features, labels, num_classes)
    return np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(-1))


def _pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(R, C) distances between points given dimension-major: ``a`` (D, R), ``b`` (D, C).

    Direct differences, never ||a||^2 + ||b||^2 - 2ab, which cancels in float32. For small D,
    whole-block elementwise ops on contiguous coordinate rows vectorise across point pairs and
    run ~3x faster than ``torch.cdist``, whose direct kernel vectorises across D.
    """
    if len(a) > DIRECT_MAX_DIM:
        return torch.cdist(a.T, b.T, compute_mode="donot_use_mm_for_euclid_dist")
    squares = torch.sub(a[0][:, None], b[0][None, :])
    squares.mul_(squares)
    for dim in range(1, len(a)):
        difference = torch.sub(a[dim][:, None], b[dim][None, :])
        squares.addcmul_(difference, difference)
    return squares.sqrt_()


# A block's result: positions (in the class-sorted order), the class whose points the distances
# were summed over, and the float64 sums.
Update = tuple[slice | torch.Tensor, int, torch.Tensor]
Task = Callable[[], list[Update]]


def _block_pair(
    points: torch.Tensor, rows: slice, row_class: int, columns: slice, column_class: int
) -> list[Update]:
    """One block of two classes (or of one with itself), used both ways: each row's summed
    distance to the columns and, off the diagonal, each column's to the rows.
    ``points`` is (D, N), sorted by class."""
    distances = _pairwise_distances(points[:, rows], points[:, columns])
    updates: list[Update] = [(rows, column_class, distances.sum(1).double())]
    if rows != columns:
        updates.append((columns, row_class, distances.sum(0).double()))
    return updates


def _rows_to_class(
    points: torch.Tensor, rows: torch.Tensor, columns: slice, column_class: int, column_block: int
) -> list[Update]:
    """Summed distance of each point in ``rows`` to every point of one class (``columns``)."""
    part = points[:, rows]
    total = torch.zeros(len(rows), dtype=torch.float64, device=points.device)
    for first in range(columns.start, columns.stop, column_block):
        last = min(first + column_block, columns.stop)
        total += _pairwise_distances(part, points[:, first:last]).sum(1).double()
    return [(rows, column_class, total)]


def _symmetric_tasks(
    points: torch.Tensor,
    first: slice,
    first_class: int,
    second: slice,
    second_class: int,
    size: int,
) -> list[Task]:
    """Block pairs covering first x second once (upper triangle when they are one class)."""
    tasks: list[Task] = []
    for i in range(first.start, first.stop, size):
        rows = slice(i, min(i + size, first.stop))
        start = i if first == second else second.start
        for j in range(start, second.stop, size):
            columns = slice(j, min(j + size, second.stop))
            tasks.append(partial(_block_pair, points, rows, first_class, columns, second_class))
    return tasks


def _run_blocks(tasks: list[Task], workers: int) -> list[Update]:
    """Run independent blocks, on CPU in ``workers`` Python threads (torch frees the GIL)."""
    if workers <= 1 or len(tasks) <= 1:
        return [update for task in tasks for update in task()]
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda task: task(), tasks))
    return [update for updates in results for update in updates]


@contextmanager
def _single_threaded_ops(device: torch.device) -> Iterator[int]:
    """On CPU, yields the core count to use as Python threads while each torch op runs on one
    thread: no op then waits on an OpenMP barrier, which costs milliseconds per op whenever
    other processes load the machine. On a GPU, yields 1 (blocks run in order)."""
    if device.type != "cpu":
        yield 1
        return
    workers = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield workers
    finally:
        torch.set_num_threads(workers)


def silhouette(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    device: str | torch.device | None = None,
) -> SilhouetteResult | None:
    """Exact silhouette, equal to scikit-learn's ``silhouette_samples``/``silhouette_score``.

    Per point, the mean distance to its own class (a) comes from one symmetric pass over that
    class. The nearest other class (b) needs only the classes that can win: the mean distance
    from x to class k lies between ||x - mu_k|| (Jensen, convex) and sqrt(||x - mu_k||^2 +
    var_k) (Jensen, concave), so any class whose lower bound exceeds the smallest upper bound
    is skipped without changing the result. A pair of classes that most points of both need is
    computed once for both directions. Singletons get 0 (scikit-learn's convention); returns
    None with fewer than 2 classes present (undefined). Runs on ``device`` (default: the
    features' device; CUDA tensors stay on the GPU).
    """
    if isinstance(features, torch.Tensor):
        target = torch.device(device) if device is not None else features.device
        points = features.detach().reshape(len(features), -1).to(target, torch.float32)
    else:
        target = torch.device(device or "cpu")
        points = torch.as_tensor(_as_2d(features), dtype=torch.float32, device=target)
    label_array = (
        labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    ).astype(np.int64)
    classes, encoded, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        return None
    with _single_threaded_ops(target) as workers:
        samples = _silhouette_samples(points, encoded, counts, target, workers)
    return SilhouetteResult(mean=float(samples.mean()), samples=samples)


def _silhouette_samples(
    points: torch.Tensor,
    encoded: np.ndarray,
    counts: np.ndarray,
    target: torch.device,
    workers: int,
) -> np.ndarray:
    n, num_classes = len(encoded), len(counts)
    row_block, column_block = CUDA_BLOCK if target.type == "cuda" else CPU_BLOCK
    order = np.argsort(encoded, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    members = [slice(int(starts[k]), int(starts[k + 1])) for k in range(num_classes)]
    sorted_points = points[torch.as_tensor(order, device=target)]
    by_dimension = sorted_points.T.contiguous()  # (D, N): contiguous coordinate rows
    label_t = torch.as_tensor(encoded[order], device=target)

    # Bounds on each point's mean distance to each other class (float64, centred data).
    as64 = sorted_points.double()
    as64 = as64 - as64.mean(0)
    means = torch.stack([as64[m].mean(0) for m in members])
    variances = torch.stack(
        [((as64[m] - means[k]) ** 2).sum(1).mean() for k, m in enumerate(members)]
    )
    lower = torch.cdist(as64, means)  # (N, K)
    upper = torch.sqrt(lower**2 + variances[None, :])
    own = torch.nn.functional.one_hot(label_t, num_classes).bool()
    upper.masked_fill_(own, math.inf)
    needed = (lower <= upper.min(1).values[:, None] * (1 + PRUNE_SLACK)) & ~own
    needed_by_class = [
        [int(needed[members[k], other].sum()) for other in range(num_classes)]
        for k in range(num_classes)
    ]

    tasks: list[Task] = []
    computed = own.clone()
    for k in range(num_classes):
        tasks += _symmetric_tasks(by_dimension, members[k], k, members[k], k, row_block)
    for k in range(num_classes):
        for other in range(k + 1, num_classes):
            pruned_cost = (
                needed_by_class[k][other] * counts[other] + needed_by_class[other][k] * counts[k]
            )
            if pruned_cost >= counts[k] * counts[other]:
                tasks += _symmetric_tasks(
                    by_dimension, members[k], k, members[other], other, row_block
                )
                computed[members[k], other] = True
                computed[members[other], k] = True
                continue
            for first_class, second_class in ((k, other), (other, k)):
                rows = members[first_class].start + torch.nonzero(
                    needed[members[first_class], second_class]
                ).squeeze(1)
                computed[rows, second_class] = True
                for first in range(0, len(rows), row_block):
                    chunk = rows[first : first + row_block]
                    tasks.append(
                        partial(
                            _rows_to_class,
                            by_dimension,
                            chunk,
                            members[second_class],
                            second_class,
                            column_block,
                        )
                    )
    sums = torch.zeros((n, num_classes), dtype=torch.float64, device=target)
    for positions, column_class, values in _run_blocks(tasks, workers):
        sums[positions, column_class] += values

    class_sizes = torch.as_tensor(counts, dtype=torch.float64, device=target)
    own_sizes = class_sizes[label_t]
    intra = sums[torch.arange(n, device=target), label_t] / (own_sizes - 1).clamp_min(1)
    mean_to_class = (sums / class_sizes[None, :]).masked_fill_(~computed | own, math.inf)
    nearest = mean_to_class.min(1).values
    scores = (nearest - intra) / torch.maximum(intra, nearest)
    scores = torch.nan_to_num(scores, nan=0.0)
    scores[own_sizes == 1] = 0.0
    samples = np.empty(n, dtype=np.float64)
    samples[order] = scores.cpu().numpy()
    return samples


def nearest_neighbour_accuracy(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    queries: np.ndarray,
    query_labels: np.ndarray,
) -> float:
    """k-NN (k=1) accuracy = precision@1 of ``queries`` against ``reference`` (exact, KD-tree)."""
    tree = cKDTree(_as_2d(reference).astype(np.float64))
    _, nearest = tree.query(_as_2d(queries).astype(np.float64), k=1)
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
    queries64 = _as_2d(queries).astype(np.float64)
    distances = ((queries64[:, None, :] - means[present][None, :, :]) ** 2).sum(-1)
    predicted = present[distances.argmin(1)]
    return float((predicted == np.asarray(query_labels)).mean())


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
    retrieval metrics ``ncm_accuracy`` and ``knn_accuracy``. Undefined values are left out."""
    features = _as_2d(features)
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
        reference_features = _as_2d(reference[0])
        reference_labels = np.asarray(reference[1], dtype=np.int64)
        if len(reference_labels):
            values["ncm_accuracy", None] = nearest_class_mean_accuracy(
                reference_features, reference_labels, features, labels, num_classes
            )
            values["knn_accuracy", None] = nearest_neighbour_accuracy(
                reference_features, reference_labels, features, labels
            )
    return values

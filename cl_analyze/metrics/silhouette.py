"""The exact silhouette, fast: pruned class pairs, blocks used both ways, float64 sums."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from cl_analyze.metrics.means import as_2d

# Block shape of the pairwise-distance pass: big enough to amortise dispatch, small enough
# that one (rows x columns) float32 block stays a few MiB on CPU.
CPU_BLOCK = (1024, 1024)


CUDA_BLOCK = (8192, 8192)


# Up to this feature dimension, distances are built from per-dimension elementwise ops.
DIRECT_MAX_DIM = 8


# Relative slack on the pruning test: exact bounds, compared in floating point.
PRUNE_SLACK = 1e-6


@dataclass(frozen=True)
class SilhouetteResult:
    """``samples`` (N,) float64 as ``sklearn.metrics.silhouette_samples``; ``mean`` its mean."""

    mean: float
    samples: np.ndarray

    def per_class(self, labels: np.ndarray) -> dict[int, float]:
        labels = np.asarray(labels)
        return {int(k): float(self.samples[labels == k].mean()) for k in np.unique(labels)}


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
    None where it is undefined: fewer than 2 classes, or every sample its own class
    (scikit-learn refuses both). Runs on ``device`` (default: the features' device; CUDA
    tensors stay on the GPU).

    The points are centred in float64 before the float32 pass: distances do not change, and
    features far from the origin (an offset of 1e4) keep their digits instead of losing them
    to float32 rounding.
    """
    if isinstance(features, torch.Tensor):
        target = torch.device(device) if device is not None else features.device
        as64 = features.detach().reshape(len(features), -1).to(target, torch.float64)
    else:
        target = torch.device(device or "cpu")
        as64 = torch.as_tensor(as_2d(features), dtype=torch.float64, device=target)
    points = (as64 - as64.mean(0)).to(torch.float32) if len(as64) else as64.float()
    label_array = (
        labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    ).astype(np.int64)
    classes, encoded, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    if len(classes) < 2 or len(classes) == len(label_array):
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

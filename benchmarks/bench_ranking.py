"""MAP@R, R-precision and precision@1 (metrics/ranking.py: a KD-tree's R nearest of each query)
against brute force as pytorch-metric-learning's CustomKNN does it (all distances with
torch.cdist, then torch.topk; float64 here), in one run on the same data.

Usage: python -m benchmarks.run ranking  (or python benchmarks/bench_ranking.py [--quick])

Test queries against train references, full-MNIST sized (60,000 + 10,000 2-D points) or, with
--quick, 10,000 + 2,000; the sets of bench_metrics: ring (center-loss-like), petals
(softmax-like), overlap (untrained).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

from benchmarks.bench_metrics import overlap, petals, ring, timed
from cl_analyze.metrics.ranking import rank_scores


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def brute_force_baseline(
    reference: np.ndarray, reference_labels: np.ndarray, queries: np.ndarray, labels: np.ndarray
) -> tuple[float, float, float]:
    """The definitions on each query's R nearest references from all distances + topk."""
    import torch

    points = torch.from_numpy(reference.astype(np.float64))
    sums, count = np.zeros(3), 0
    for label in np.unique(labels):
        r = int((reference_labels == label).sum())
        members = torch.from_numpy(queries[labels == label].astype(np.float64))
        for start in range(0, len(members), 256):
            distances = torch.cdist(
                members[start : start + 256], points, compute_mode="donot_use_mm_for_euclid_dist"
            )
            nearest = torch.topk(distances, r, largest=False, sorted=True).indices.numpy()
            relevant = reference_labels[nearest] == label
            precision = np.cumsum(relevant, axis=1) / np.arange(1, r + 1)
            sums += [
                ((precision * relevant).sum(1) / r).sum(),
                (relevant.sum(1) / r).sum(),
                relevant[:, 0].sum(),
            ]
            count += len(relevant)
    return tuple(sums / count)  # type: ignore[return-value]


def main(quick: bool = False) -> None:
    print(f"{os.cpu_count()} CPU cores ({cpu_name()}), load average {os.getloadavg()[0]:.1f}")
    train_n, test_n = (10_000, 2_000) if quick else (60_000, 10_000)
    for name, make in (("ring", ring), ("petals", petals), ("overlap", overlap)):
        train, test = make(train_n, seed=1), make(test_n, seed=2)
        baseline, base_s, base_cpu = timed(brute_force_baseline, *train, *test)
        ours, ours_s, ours_cpu = timed(rank_scores, *train, *test)
        assert ours is not None
        got = (ours.map_at_r, ours.r_precision, ours.precision_at_1)
        difference = float(np.abs(np.subtract(got, baseline)).max())
        print(
            f"MAP@R etc., {test_n} queries x {train_n} references ({name}, MAP@R {got[0]:.3f}):"
            f" cdist + topk {base_s:6.2f} s (cpu {base_cpu:6.1f})"
            f"  cl-analyze {ours_s:6.2f} s (cpu {ours_cpu:5.1f})"
            f"  speed-up {base_s / ours_s:4.1f}x  max |diff| {difference:.1e}"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

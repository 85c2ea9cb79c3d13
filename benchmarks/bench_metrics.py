"""Exact silhouette vs scikit-learn, and the whole per-epoch metric pass, in one run.

Usage: python -m benchmarks.run metrics  (or python benchmarks/bench_metrics.py [--quick])

The synthetic 2-D sets mimic trained LeNet++ features: ``petals`` (softmax: classes as rays from
the origin, radii spread out, all classes meeting near the origin: the hard case for pruning) and
``ring`` (center loss: compact blobs on a circle); ``overlap`` is the untrained worst case.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import silhouette_samples

from cl_analyze.metrics import split_metrics
from cl_analyze.metrics.silhouette import silhouette

T = TypeVar("T")


def petals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    angle = labels * 2 * np.pi / 10 + rng.normal(0, 0.25, n)
    radius = rng.gamma(4.0, 10.0, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    return points.astype(np.float32), labels


def ring(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    angle = labels * 2 * np.pi / 10
    points = np.stack([np.cos(angle), np.sin(angle)], 1) * 20 + rng.normal(0, 2.5, (n, 2))
    return points.astype(np.float32), labels


def overlap(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Untrained features: every class on top of every other (no class can be pruned)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 2)).astype(np.float32), rng.integers(0, 10, n)


def timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of this process): on a machine that other jobs load,
    CPU time is the steadier measure of the work done."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main(quick: bool = False) -> None:
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at start")
    sizes = (5_000, 10_000) if quick else (20_000, 60_000)
    for n in sizes:
        points, labels = petals(n, seed=n)
        reference, sklearn_s, sklearn_cpu = timed(silhouette_samples, points, labels)
        ours, ours_s, ours_cpu = timed(silhouette, points, labels)
        assert ours is not None
        difference = float(np.abs(ours.samples - reference).max())
        print(
            f"silhouette N={n:>6} petals: scikit-learn {sklearn_s:7.2f} s (cpu {sklearn_cpu:6.1f})"
            f"  cl-analyze {ours_s:6.2f} s (cpu {ours_cpu:5.2f})"
            f"  speed-up {sklearn_s / ours_s:5.1f}x  max |diff| {difference:.1e}"
        )
        for name, make in (("ring", ring), ("overlap", overlap)):
            points, labels = make(n, seed=n)
            _, seconds, cpu = timed(silhouette, points, labels)
            print(
                f"silhouette N={n:>6} {name + ':':8} cl-analyze {seconds:6.2f} s (cpu {cpu:5.2f})"
                f"  speed-up vs the scikit-learn time above {sklearn_s / seconds:5.1f}x"
            )
    train_n, test_n = (10_000, 2_000) if quick else (60_000, 10_000)
    for name, make in (("petals", petals), ("ring", ring), ("overlap", overlap)):
        train = make(train_n, seed=1)
        test = make(test_n, seed=2)
        centers = np.stack([train[0][train[1] == k].mean(0) for k in range(10)])
        start, cpu = time.perf_counter(), time.process_time()
        split_metrics(*train, 10, centers=centers, where="train")
        split_metrics(*test, 10, centers=centers, reference=train, where="test")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"full metric pass, {train_n} train + {test_n} test 2-D points ({name}):"
            f" {seconds:.2f} s per epoch (cpu {cpu:.2f} s)"
            f" -> {100 * seconds / 60:.1f} min per 100 epochs"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

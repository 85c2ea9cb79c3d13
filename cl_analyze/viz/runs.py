"""A run loaded for drawing: 2-D points per epoch (projected, subsampled), fixed limits, curves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics.means import class_mean_distances
from cl_analyze.store import SPLITS, RunStore
from cl_analyze.viz.projections import AXIS_LABELS, check_projection, project_epochs
from cl_analyze.viz.style import (
    Limits,
    robust_limits,
)

if TYPE_CHECKING:
    import pandas as pd


EpochSpec = int | str


@dataclass(frozen=True)
class Projection:
    """A linear map from D-dimensional features to the 2-D plane of the plots.

    PCA axes are fitted on centred features but applied without subtracting the mean, so the
    origin stays the origin (a collapse toward it shows) and every epoch uses the same map.
    """

    basis: np.ndarray  # (D, 2)
    axis_labels: tuple[str, str]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float32) @ self.basis.astype(np.float32)


def fit_projection(features: np.ndarray, dims: tuple[int, int] | None = None) -> Projection:
    """Identity for 2-D features, ``dims`` if given, else the top two principal axes."""
    dimension = features.shape[1]
    if dimension < 2:
        raise CLAnalyzeError(
            f"features have dimension {dimension}: a scatter needs at least 2"
            " (train with --feat-dim 2 or more)"
        )
    if dims is not None:
        if max(dims) >= dimension:
            raise CLAnalyzeError(
                f"--dims {dims[0]},{dims[1]}: features have only {dimension} dimensions"
                f" (0..{dimension - 1})"
            )
        basis = np.zeros((dimension, 2))
        basis[dims[0], 0] = basis[dims[1], 1] = 1.0
        return Projection(basis, (f"feature {dims[0]}", f"feature {dims[1]}"))
    if dimension == 2:
        return Projection(np.eye(2), ("feature 0", "feature 1"))
    if len(features) < 2:
        raise CLAnalyzeError(
            "no finite features to fit the PCA on (did training diverge at once?):"
            " pick two raw dimensions with --dims 0,1"
        )
    centred = np.asarray(features, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:2].T
    # Fix the sign (SVD's is arbitrary): the largest loading of each axis is positive.
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), [0, 1]])
    basis = basis * np.where(signs == 0, 1.0, signs)
    explained = singular**2 / max(float(np.sum(singular**2)), 1e-300)
    labels = (f"PC 1 ({100 * explained[0]:.0f}%)", f"PC 2 ({100 * explained[1]:.0f}%)")
    return Projection(basis, labels)


def stratified_sample(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of ``limit`` samples with each class in proportion, in a shuffled drawing order.

    Deterministic for a seed. The order is shuffled so no class is always drawn on top.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if limit is None or limit >= len(labels):
        return rng.permutation(len(labels))
    if limit < 1:
        raise CLAnalyzeError(f"--max-points {limit}: give a positive number of points")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (limit / len(labels))
    take = np.floor(quota).astype(np.int64)
    # Largest remainders get the points left over, so the total is exactly ``limit``.
    leftover = limit - int(take.sum())
    take[np.argsort(-(quota - take), kind="stable")[:leftover]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:count]
        for label, count in zip(classes, take, strict=True)
    ]
    return rng.permutation(np.concatenate(chosen))


@dataclass(frozen=True)
class PlotRun:
    """One run loaded for plotting: 2-D points per epoch row, fixed limits, curves, metrics."""

    name: str
    dataset: str
    class_names: tuple[str, ...]
    epochs: np.ndarray  # (E,) epoch of each row
    points: Mapping[str, np.ndarray]  # split -> (E, n, 2), the same n samples in every row
    labels: Mapping[str, np.ndarray]  # split -> (n,) labels of those samples
    accuracy: Mapping[str, np.ndarray]  # split -> (E,) accuracy over the whole split
    centers: np.ndarray | None  # (E, C, 2) learned centers, projected
    history: Mapping[str, np.ndarray]
    limits: Limits
    axis_labels: tuple[str, str]
    distances: Mapping[str, np.ndarray]  # "peak (epoch 3)" -> (C, C) class-mean distances
    metrics: pd.DataFrame | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.points)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def row_at(self, epoch: int) -> int:
        """The row shown at ``epoch``: the latest row not after it (a shorter run holds)."""
        return max(int(np.searchsorted(self.epochs, epoch, side="right")) - 1, 0)

    def accuracy_curve(self, split: str) -> np.ndarray:
        """(E,) from the training history when recorded, else from the stored predictions."""
        key = "test_accuracy" if split == "test" else "train_accuracy_eval"
        recorded = np.asarray(self.history.get(key, []), dtype=np.float64)
        fallback = self.accuracy.get(split, np.full(len(self.epochs), np.nan))
        if len(recorded) != len(self.epochs):
            return fallback
        return np.where(np.isfinite(recorded), recorded, fallback)

    @property
    def peak_row(self) -> int:
        """Row of the highest test accuracy (the earliest on ties); the last row without any."""
        for split in ("test", "train"):
            curve = self.accuracy_curve(split)
            if np.isfinite(curve).any():
                return int(np.nanargmax(curve))
        return len(self.epochs) - 1

    def metric_curve(self, split: str, metric: str) -> np.ndarray:
        """(E,) a whole-split metric from the metrics frame, NaN where it has none."""
        values = np.full(len(self.epochs), np.nan)
        if self.metrics is None or self.metrics.empty:
            return values
        frame = self.metrics
        selected = frame[
            (frame["split"] == split) & (frame["metric"] == metric) & (frame["class"] == "")
        ]
        by_epoch = dict(zip(selected["epoch"].astype(int), selected["value"], strict=True))
        for row, epoch in enumerate(self.epochs):
            values[row] = by_epoch.get(int(epoch), np.nan)
        return values

    def resolve(self, spec: EpochSpec) -> int:
        """The row for an ``--epochs`` entry; numbers hold the last row before them."""
        if spec == "first":
            return 0
        if spec == "last":
            return len(self.epochs) - 1
        if spec == "peak":
            return self.peak_row
        return self.row_at(int(spec))


def load_plot_run(
    run: Path,
    *,
    splits: tuple[str, ...] = SPLITS,
    max_points: int | None = 10_000,
    dims: tuple[int, int] | None = None,
    metrics: pd.DataFrame | None = None,
    seed: int = 0,
    name: str | None = None,
    rows: int | None = None,
    projection_name: str = "pca",
) -> PlotRun:
    """Read a run's completed rows, project them to 2-D and subsample, ready for any figure.
    ``rows``: use only the first that many rows (a snapshot of a live run taken earlier).
    ``projection_name``: for D > 2 without ``dims``, 'umap' or 'tsne' instead of PCA (per-epoch
    maps of the sampled points; the learned centers are then not drawn)."""
    with RunStore(run, rows=rows) as store:
        if store.rows == 0:
            raise CLAnalyzeError(
                f"{store.path} has no completed epoch yet: wait for epoch 0 to finish"
            )
        available = tuple(s for s in splits if store.has_features(s))
        if not available:
            wanted = " or ".join(splits)
            raise CLAnalyzeError(
                f"{store.path} stores no {wanted} features: pick another --split"
                " or rebuild them with `cl-analyze embed`"
            )
        last = store.rows - 1
        fit_split = "train" if "train" in available else available[0]
        projection = fit_projection(_latest_finite_features(store, fit_split), dims)
        points: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        accuracy: dict[str, np.ndarray] = {}
        for split in available:
            split_labels = store.labels(split)
            keep = stratified_sample(split_labels, max_points, seed)
            labels[split] = split_labels[keep]
            points[split] = np.stack(
                [projection(store.features(split, row)[keep]) for row in range(store.rows)]
            )
            predictions = store.predictions(split)
            accuracy[split] = (predictions == split_labels[None, :]).mean(axis=1)
        raw_centers = store.centers()
        centers = None if raw_centers is None else projection(raw_centers)
        axis_labels = projection.axis_labels
        if check_projection(projection_name) != "pca" and store.feat_dim > 2 and dims is None:
            for split in available:
                keep_rows = stratified_sample(store.labels(split), max_points, seed)
                raw = [store.features(split, row)[keep_rows] for row in range(store.rows)]
                points[split] = project_epochs(raw, projection_name, seed)
            centers = None  # a non-linear map has no place for points it was not fitted on
            axis_labels = AXIS_LABELS[projection_name]
        history = store.history
        partial = PlotRun(
            name=name or store.name,
            dataset=store.dataset,
            class_names=tuple(store.class_names),
            epochs=store.epochs.astype(np.int64),
            points=points,
            labels=labels,
            accuracy=accuracy,
            centers=centers,
            history=history,
            limits=((0.0, 1.0), (0.0, 1.0)),
            axis_labels=axis_labels,
            distances={},
            metrics=metrics,
        )
        # Class-mean distances use the raw features of the whole split, not the 2-D sample.
        distance_split = "test" if "test" in available else available[0]
        distances = {}
        peak = partial.peak_row
        shown = [("peak", peak), ("last", last)] if peak != last else [("peak = last", last)]
        for label, row in shown:
            epoch = int(partial.epochs[row])
            distances[f"{label} (epoch {epoch})"] = class_mean_distances(
                store.features(distance_split, row),
                store.labels(distance_split),
                store.num_classes,
            )
    limits = robust_limits(np.concatenate([p.reshape(-1, 2) for p in points.values()]), centers)
    return replace(partial, limits=square_limits(limits), distances=distances)


def _latest_finite_features(store: RunStore, split: str) -> np.ndarray:
    """The last row's features, or those of the latest row that has finite ones: a diverged
    run ends in NaN, and the projection is fitted where the features still mean something."""
    for row in range(store.rows - 1, -1, -1):
        features = store.features(split, row)
        finite = features[np.isfinite(features).all(axis=1)]
        if len(finite) >= 3 or row == 0:
            return finite
    raise AssertionError("unreachable: row 0 always returns")


def square_limits(limits: Limits) -> Limits:
    """Widen the narrower axis so both span the same range: square panels then show true
    distances (equal aspect) without changing the limits' centre."""
    (x0, x1), (y0, y1) = limits
    half = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return ((cx - half, cx + half), (cy - half, cy + half))

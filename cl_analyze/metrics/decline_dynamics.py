"""The numbers behind "why accuracy declines after the peak": what changed, sample by sample,
between two epochs of one run (docs/report.md defines each one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cl_analyze.metrics.dynamics import (
    class_accuracy,
    flip_masks,
    row_of_epoch,
    store_geometry,
)
from cl_analyze.store import RunStore

# A lost sample "sat near a boundary" at the first epoch when its distance to the edge of its
# class's region was below this quantile of the distances of every sample right at that epoch.
NEAR_QUANTILE = 0.2


@dataclass(frozen=True)
class ClassFlips:
    name: str
    samples: int
    lost: int
    gained: int
    accuracy_a: float
    accuracy_b: float


@dataclass(frozen=True, eq=False)
class DeclineDynamics:
    """One run between epochs ``epoch_a`` (the peak) and ``epoch_b`` (the last), test split.

    Margin fields are None without a stored classifier (a version-1 store); train fields are
    None without train predictions. Arrays are kept for the figures."""

    run: str
    epoch_a: int
    epoch_b: int
    samples: int
    lost: int
    gained: int
    per_class: list[ClassFlips]
    confusions: list[tuple[str, str, int]]  # (true class, prediction at b, lost samples)
    has_classifier: bool
    norm_a: float  # mean test feature norm
    norm_b: float
    lost_displacement: float | None  # median ||x_b - x_a|| of the lost samples
    kept_displacement: float | None  # ... of the samples right at both epochs
    lost_boundary_a: float | None  # median distance to the region edge at a, lost samples
    kept_boundary_a: float | None  # ... samples right at both epochs
    lost_near: int | None  # lost samples below the NEAR_QUANTILE of correct samples at a
    train_accuracy_a: float | None  # eval-mode train accuracy from the stored predictions
    train_accuracy_b: float | None
    test_accuracy_a: float = 0.0
    test_accuracy_b: float = 0.0
    epochs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_names: list[str] = field(default_factory=list)
    class_accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (E, C)
    # (split, "a" | "b") -> logit margins of every sample of that split at that epoch
    margin_samples: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    # The test split at both epochs, for the flip scatter: labels (N,), features (N, D) at a
    # and b, and the masks of the lost and gained samples.
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    features_a: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    features_b: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    lost_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    gained_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    predictions_a: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    predictions_b: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # How often each test sample changed from right to wrong or back over all stored epochs.
    flip_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def summary(self) -> dict[str, Any]:
        """The numbers of the report's section as JSON-ready values (summary.json)."""
        return {
            "epoch_a": self.epoch_a,
            "epoch_b": self.epoch_b,
            "samples": self.samples,
            "lost": self.lost,
            "gained": self.gained,
            "per_class": [asdict(c) for c in self.per_class],
            "confusions": [{"true": t, "predicted": p, "lost": n} for t, p, n in self.confusions],
            "has_classifier": self.has_classifier,
            "lost_near_boundary": self.lost_near,
            "lost_boundary_distance_at_a": self.lost_boundary_a,
            "kept_boundary_distance_at_a": self.kept_boundary_a,
            "lost_displacement": self.lost_displacement,
            "kept_displacement": self.kept_displacement,
            "feature_norm_a": self.norm_a,
            "feature_norm_b": self.norm_b,
            "train_accuracy_a": self.train_accuracy_a,
            "train_accuracy_b": self.train_accuracy_b,
            "test_accuracy_a": self.test_accuracy_a,
            "test_accuracy_b": self.test_accuracy_b,
        }

    def most_flipped_lost(self, limit: int) -> np.ndarray:
        """Positions of up to ``limit`` lost samples, those that flipped most often first."""
        lost = np.flatnonzero(self.lost_mask)
        order = np.lexsort((lost, -self.flip_counts[lost]))
        return lost[order][:limit]

    @property
    def gap_a(self) -> float | None:
        if self.train_accuracy_a is None:
            return None
        return self.train_accuracy_a - self.test_accuracy_a

    @property
    def gap_b(self) -> float | None:
        if self.train_accuracy_b is None:
            return None
        return self.train_accuracy_b - self.test_accuracy_b


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else None


def _accuracy(store: RunStore, split: str, row: int) -> float | None:
    if split not in store.splits or not store.has_features(split):
        return None
    return float((store.predictions(split, row) == store.labels(split)).mean())


def decline_dynamics(
    run: Path | str,
    a: int | str = "peak",
    b: int | str = "last",
    *,
    rows: int | None = None,
    label: str | None = None,
) -> DeclineDynamics:
    """What changed in the test split between epochs ``a`` and ``b`` (numbers, 'peak', 'last');
    ``rows``: read only that many rows (a report's snapshot of a live run)."""
    with RunStore(run, rows=rows) as store:
        row_a, row_b = row_of_epoch(store, a), row_of_epoch(store, b)
        labels = store.labels("test")
        names = store.class_names
        predictions = store.predictions("test")
        before, after = predictions[row_a], predictions[row_b]
        lost, gained = flip_masks(labels, before, after)
        kept = (before == labels) & (after == labels)
        accuracy = class_accuracy(predictions, labels, store.num_classes)
        counts = np.bincount(labels, minlength=store.num_classes)
        per_class = [
            ClassFlips(
                names[k],
                int(counts[k]),
                int(lost[labels == k].sum()),
                int(gained[labels == k].sum()),
                float(accuracy[row_a, k]),
                float(accuracy[row_b, k]),
            )
            for k in range(store.num_classes)
            if counts[k]
        ]
        pairs: dict[tuple[str, str], int] = {}
        for true, predicted in zip(labels[lost], after[lost], strict=True):
            key = (names[true], names[predicted])
            pairs[key] = pairs.get(key, 0) + 1
        confusions = sorted(((t, p, n) for (t, p), n in pairs.items()), key=lambda x: -x[2])
        geometry_a = store_geometry(store, "test", row_a)
        geometry_b = store_geometry(store, "test", row_b)
        features_a, features_b = store.features("test", row_a), store.features("test", row_b)
        displacement = np.linalg.norm(features_b.astype(np.float64) - features_a, axis=1)
        has_classifier = geometry_a.boundary_distance is not None
        lost_boundary = kept_boundary = lost_near = None
        if has_classifier and geometry_a.boundary_distance is not None:
            boundary = geometry_a.boundary_distance
            lost_boundary, kept_boundary = _median(boundary[lost]), _median(boundary[kept])
            right = boundary[before == labels]
            if len(right):
                near = np.quantile(right, NEAR_QUANTILE)
                lost_near = int((boundary[lost] < near).sum())
        margin_samples: dict[tuple[str, str], np.ndarray] = {}
        for split in store.splits:
            if not store.has_features(split):
                continue
            for moment, row in (("a", row_a), ("b", row_b)):
                if split == "test":
                    geometry = geometry_a if moment == "a" else geometry_b
                else:
                    geometry = store_geometry(store, split, row)
                if geometry.logit_margin is not None:
                    margin_samples[split, moment] = geometry.logit_margin
        return DeclineDynamics(
            run=label or store.name,
            epoch_a=int(store.epochs[row_a]),
            epoch_b=int(store.epochs[row_b]),
            samples=len(labels),
            lost=int(lost.sum()),
            gained=int(gained.sum()),
            per_class=per_class,
            confusions=confusions,
            has_classifier=has_classifier,
            norm_a=float(geometry_a.norm.mean()),
            norm_b=float(geometry_b.norm.mean()),
            lost_displacement=_median(displacement[lost]),
            kept_displacement=_median(displacement[kept]),
            lost_boundary_a=lost_boundary,
            kept_boundary_a=kept_boundary,
            lost_near=lost_near,
            train_accuracy_a=_accuracy(store, "train", row_a),
            train_accuracy_b=_accuracy(store, "train", row_b),
            test_accuracy_a=float((before == labels).mean()),
            test_accuracy_b=float((after == labels).mean()),
            epochs=store.epochs,
            class_names=list(names),
            class_accuracy=accuracy,
            margin_samples=margin_samples,
            labels=labels,
            features_a=features_a,
            features_b=features_b,
            lost_mask=lost,
            gained_mask=gained,
            predictions_a=before.astype(np.int64),
            predictions_b=after.astype(np.int64),
            indices=store.indices("test"),
            flip_counts=np.count_nonzero(np.diff(predictions == labels, axis=0), axis=0),
        )

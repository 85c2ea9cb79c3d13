"""What the classifier decides for each sample, epoch by epoch: per-class accuracy, flips between
two epochs and the geometry of every sample against the stored last layer (docs/report.md).

Pure functions on arrays (features (N, D), labels (N,), the classifier's ``weight`` (C, D) and
``bias`` (C,)), and readers that take them from a run store as tidy DataFrames. Margins are
recomputed in float64 from the stored float32 features and classifier; predictions and flips
are the stored ones (the model's own argmax, under the run's precision).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics.means import class_means
from cl_analyze.store import RunStore

# Per-epoch summaries of the dynamics kept in the metrics cache (whole split and per class).
DYNAMICS_METRICS = ("accuracy", "logit_margin", "angular_margin", "boundary_distance")

GEOMETRY_COLUMNS = [
    "norm",
    "angle",
    "logit_margin",
    "angular_margin",
    "boundary_distance",
    "rival",
    "center_distance",
    "mean_distance",
]


@dataclass(frozen=True)
class SampleGeometry:
    """Each sample's place against the classifier and its class (arrays of length N).

    ``angle``, ``angular_margin`` in degrees; the classifier-dependent arrays are None when the
    store has no classifier, ``center_distance`` when it has no centers."""

    norm: np.ndarray  # ||x||
    mean_distance: np.ndarray  # ||x - mean of its class in this split||
    center_distance: np.ndarray | None  # ||x - c_y||
    angle: np.ndarray | None  # angle(x, w_y)
    logit_margin: np.ndarray | None  # z_y - max_{j != y} z_j
    rival: np.ndarray | None  # argmax_{j != y} z_j
    angular_margin: np.ndarray | None  # min_{j != y} angle(x, w_j) - angle(x, w_y)
    boundary_distance: np.ndarray | None  # min_{j != y} (z_y - z_j) / ||w_y - w_j||


def _angles(features: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(N, C) angles in degrees between each feature and each weight vector (NaN at zero)."""
    norms = np.linalg.norm(features, axis=1)[:, None] * np.linalg.norm(weight, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (features @ weight.T) / norms
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _others(values: np.ndarray, labels: np.ndarray, fill: float) -> np.ndarray:
    """(N, C) copy with each sample's own class replaced by ``fill`` (left out of a min/max)."""
    others = values.astype(np.float64, copy=True)
    others[np.arange(len(labels)), labels] = fill
    return others


def classifier_geometry(
    features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> dict[str, np.ndarray]:
    """The classifier-dependent part of ``SampleGeometry`` (needs at least two classes).

    ``boundary_distance`` is, for a correctly classified sample, the exact Euclidean distance to
    the edge of its class's decision region (the region is an intersection of half-planes
    z_y >= z_j, so the distance to its edge is the smallest distance to one of them); it is
    negative for a misclassified sample (how far past the worst-violated pairwise boundary)."""
    x = np.asarray(features, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    b = np.asarray(bias, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if w.shape[0] < 2:
        raise CLAnalyzeError("margins need at least two classes")
    rows = np.arange(len(y))
    logits = x @ w.T + b
    own = logits[rows, y]
    rival_logits = _others(logits, y, -np.inf)
    rival = rival_logits.argmax(axis=1)
    angles = _angles(x, w)
    own_angle = angles[rows, y]
    nearest_other_angle = _others(angles, y, np.inf).min(axis=1)
    # Pairwise boundaries z_y = z_j: the signed distance of x to each is (z_y - z_j)/||w_y - w_j||.
    gaps = own[:, None] - logits
    spans = np.linalg.norm(w[:, None, :] - w[None, :, :], axis=2)[y]
    with np.errstate(invalid="ignore", divide="ignore"):
        signed = np.where(spans > 0, gaps / spans, np.sign(gaps) * np.inf)
    signed = np.nan_to_num(signed, nan=0.0, posinf=np.inf, neginf=-np.inf)
    return {
        "angle": own_angle,
        "logit_margin": own - rival_logits[rows, rival],
        "rival": rival,
        "angular_margin": nearest_other_angle - own_angle,
        "boundary_distance": _others(signed, y, np.inf).min(axis=1),
    }


def sample_geometry(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    classifier: tuple[np.ndarray, np.ndarray] | None = None,
    centers: np.ndarray | None = None,
) -> SampleGeometry:
    """Norm, distances to the class mean and center, and the margins against the classifier."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    means, _ = class_means(x, y, num_classes)
    parts = (
        classifier_geometry(x, y, *classifier)
        if classifier is not None and len(y)
        else dict.fromkeys(
            ("angle", "logit_margin", "rival", "angular_margin", "boundary_distance")
        )
    )
    return SampleGeometry(
        norm=np.linalg.norm(x, axis=1),
        mean_distance=np.linalg.norm(x - means[y], axis=1) if len(y) else np.zeros(0),
        center_distance=None
        if centers is None
        else np.linalg.norm(x - np.asarray(centers, np.float64)[y], axis=1),
        **parts,
    )


def class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy per class, (..., C) for predictions (..., N); NaN for a class with no sample."""
    correct = np.asarray(predictions) == np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    hits = np.stack(
        [
            np.bincount(labels, weights=row, minlength=num_classes)
            for row in correct.reshape(-1, len(labels))
        ]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits / counts
    return accuracy.reshape(*correct.shape[:-1], num_classes)


def flip_masks(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lost, gained): right before and wrong after, and the reverse."""
    right_before, right_after = before == labels, after == labels
    return right_before & ~right_after, ~right_before & right_after


def dynamics_values(
    labels: np.ndarray,
    predictions: np.ndarray,
    num_classes: int,
    geometry: SampleGeometry | None,
) -> dict[tuple[str, int | None], float]:
    """One split's per-epoch summaries for the metrics cache: accuracy (from the stored
    predictions) and the median of each margin, whole split (None) and per present class."""
    values: dict[tuple[str, int | None], float] = {}
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return values
    present = [int(k) for k in np.flatnonzero(np.bincount(y, minlength=num_classes))]
    correct = np.asarray(predictions) == y
    columns: dict[str, np.ndarray] = {"accuracy": correct.astype(np.float64)}
    if geometry is not None and geometry.logit_margin is not None:
        for name in ("logit_margin", "angular_margin", "boundary_distance"):
            columns[name] = getattr(geometry, name)
    for name, column in columns.items():
        summary = np.mean if name == "accuracy" else np.nanmedian
        values[name, None] = float(summary(column))
        for k in present:
            values[name, k] = float(summary(column[y == k]))
    return values


# --- from a run store --------------------------------------------------------------------------


def row_of_epoch(store: RunStore, epoch: int | str) -> int:
    """The row of an epoch number, or of 'peak' (earliest maximum test accuracy) or 'last'."""
    epochs = store.epochs
    if len(epochs) == 0:
        raise CLAnalyzeError(f"{store.path} has no completed epoch yet")
    if epoch == "last":
        return len(epochs) - 1
    if epoch == "peak":
        accuracy = store.history.get("test_accuracy")
        if accuracy is None or not np.isfinite(accuracy).any():
            # A store another program wrote may record no accuracy: its predictions give it.
            accuracy = (store.predictions("test") == store.labels("test")).mean(axis=1)
        return int(np.nanargmax(accuracy))
    matches = np.flatnonzero(epochs == int(epoch))
    if not len(matches):
        raise CLAnalyzeError(
            f"{store.path} has no epoch {epoch} (it holds {int(epochs[0])}..{int(epochs[-1])}):"
            " pick one of those, 'peak' or 'last'"
        )
    return int(matches[0])


def store_geometry(store: RunStore, split: str, row: int) -> SampleGeometry:
    return sample_geometry(
        store.features(split, row),
        store.labels(split),
        store.num_classes,
        classifier=store.classifier(row),
        centers=store.centers(row),
    )


def _geometry_frame(geometry: SampleGeometry, n: int) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    for name in GEOMETRY_COLUMNS:
        value = getattr(geometry, name)
        if value is None:
            value = np.full(n, -1 if name == "rival" else np.nan)
        columns[name] = value
    return columns


def margins(
    run: Path | str | RunStore, epoch: int | str = "last", *, split: str | None = None
) -> pd.DataFrame:
    """Every sample's geometry at one epoch (a number, 'peak' or 'last'): columns epoch, split,
    sample (position in the store's split), index (in the original dataset), label, prediction
    (stored), correct, then ``GEOMETRY_COLUMNS``. Without a stored classifier (a version-1
    store) the margins and angles are NaN and rival is -1; without centers center_distance is NaN.
    ``split``: one split, default every split with features."""
    with _opened(run) as store:
        row = row_of_epoch(store, epoch)
        splits = (
            [split] if split is not None else [s for s in store.splits if store.has_features(s)]
        )
        frames = []
        for name in splits:
            labels = store.labels(name)
            predictions = store.predictions(name, row)
            geometry = store_geometry(store, name, row)
            frames.append(
                pd.DataFrame(
                    {
                        "epoch": int(store.epochs[row]),
                        "split": name,
                        "sample": np.arange(len(labels)),
                        "index": store.indices(name),
                        "label": labels,
                        "prediction": predictions.astype(np.int64),
                        "correct": predictions == labels,
                        **_geometry_frame(geometry, len(labels)),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def flips(
    run: Path | str | RunStore,
    a: int | str = "peak",
    b: int | str = "last",
    *,
    split: str = "test",
) -> pd.DataFrame:
    """The samples of ``split`` whose correctness differs between epochs ``a`` and ``b``
    (numbers, 'peak' or 'last'): one row each, change 'lost' (right at a, wrong at b) or
    'gained', with both predictions and the geometry at both epochs (suffixes _a and _b) and
    ``displacement`` = ||x_b - x_a||."""
    with _opened(run) as store:
        rows = row_of_epoch(store, a), row_of_epoch(store, b)
        labels = store.labels(split)
        before, after = (store.predictions(split, r) for r in rows)
        lost, gained = flip_masks(labels, before, after)
        chosen = np.flatnonzero(lost | gained)
        geometry = [_geometry_frame(store_geometry(store, split, r), len(labels)) for r in rows]
        positions = [store.features(split, r) for r in rows]
        epochs = [int(store.epochs[r]) for r in rows]
        indices = store.indices(split)
    columns: dict[str, object] = {
        "split": split,
        "epoch_a": epochs[0],
        "epoch_b": epochs[1],
        "sample": chosen,
        "index": indices[chosen],
        "label": labels[chosen],
        "prediction_a": before[chosen].astype(np.int64),
        "prediction_b": after[chosen].astype(np.int64),
        "change": np.where(lost[chosen], "lost", "gained"),
    }
    for suffix, values in zip(("_a", "_b"), geometry, strict=True):
        for name in GEOMETRY_COLUMNS:
            columns[name + suffix] = values[name][chosen]
    columns["displacement"] = np.linalg.norm(
        positions[1][chosen].astype(np.float64) - positions[0][chosen], axis=1
    )
    return pd.DataFrame(columns)


def _opened(run: Path | str | RunStore) -> AbstractContextManager[RunStore]:
    """A store opened here (closed after), or one the caller holds open (left open)."""
    return nullcontext(run) if isinstance(run, RunStore) else RunStore(run)

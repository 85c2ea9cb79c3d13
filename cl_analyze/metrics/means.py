"""Class means and the distances between them, the base of every geometry metric."""

from __future__ import annotations

import numpy as np

from cl_analyze.errors import CLAnalyzeError


def check_finite(features: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(features)):
        bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
        raise CLAnalyzeError(
            f"{where}: {bad} feature vectors are NaN or infinite (the training diverged?):"
            " lower the learning rate or center-loss weight and retrain"
        )


def as_2d(features: np.ndarray) -> np.ndarray:
    array = np.asarray(features)
    return array.reshape(len(array), -1)


def class_means(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(C, D) float64 class means (NaN rows for absent classes) and (C,) class sizes."""
    features = as_2d(features).astype(np.float64)
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

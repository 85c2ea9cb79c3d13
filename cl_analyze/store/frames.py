"""A run store as pandas DataFrames, for notebooks: the per-epoch scalars, one epoch's
embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store.reader import RunStore


def row_of_epoch(store: RunStore, epoch: int) -> int:
    """The row holding ``epoch`` (negative: counted from the last, -1 the last epoch)."""
    epochs = store.epochs
    if len(epochs) == 0:
        raise CLAnalyzeError(f"{store.path} has no complete epoch yet: train it first")
    if epoch < 0:
        if -epoch > len(epochs):
            raise CLAnalyzeError(
                f"{store.path} has only {len(epochs)} epochs: pick -1..-{len(epochs)}"
            )
        return len(epochs) + epoch
    rows = np.flatnonzero(epochs == epoch)
    if len(rows) == 0:
        raise CLAnalyzeError(
            f"{store.path} holds no epoch {epoch}: pick one of {int(epochs[0])}..{int(epochs[-1])}"
        )
    return int(rows[0])


def history_frame(run: Path | str) -> pd.DataFrame:
    """Epoch x scalars: one row per complete epoch (index ``epoch``), one column per
    ``/history`` scalar (losses, accuracies, learning rates, norms; NaN where not applicable)."""
    with RunStore(run) as store:
        history = store.history
        frame = pd.DataFrame({name: history[name] for name in sorted(history)})
        frame.index = pd.Index(store.epochs.astype(np.int64), name="epoch")
    return frame


def embeddings_frame(run: Path | str, split: str = "test", epoch: int = -1) -> pd.DataFrame:
    """One epoch's embeddings of a split: columns ``sample`` (position in the original split),
    ``label``, ``class`` (its name), ``prediction``, ``correct`` and ``f0``..``f{D-1}``, one row
    per stored sample. ``epoch`` is the epoch number (0 = before training), negative counts from
    the last."""
    with RunStore(run) as store:
        row = row_of_epoch(store, epoch)
        labels = store.labels(split)
        features = store.features(split, row)
        predictions = store.predictions(split, row)
        names = np.asarray(store.class_names, dtype=object)
        frame = pd.DataFrame(
            {
                "sample": store.indices(split),
                "label": labels,
                "class": names[labels],
                "prediction": predictions.astype(np.int64),
                "correct": predictions == labels,
            }
        )
        for d in range(features.shape[1]):
            frame[f"f{d}"] = features[:, d]
    return frame

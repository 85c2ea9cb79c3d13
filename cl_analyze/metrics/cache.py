"""Per-epoch metrics of a run store, cached in the store's ``/metrics`` group.

The cache holds one group per epoch (``/metrics/epoch_<E>``) with four equal-length datasets
``split``, ``metric``, ``class`` and ``value``; the ``/metrics`` group's ``metrics_version``
attribute says which metric definitions wrote it. A bumped ``METRICS_VERSION`` drops the cache;
an unchanged one is never recomputed. The cache is only written when no trainer holds the file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from cl_analyze.atomic import atomic_path
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics.dynamics import dynamics_values, sample_geometry
from cl_analyze.metrics.geometry import split_metrics
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore, file_lock, lock_path_of, store_path

# Bump whenever a metric's definition changes: stored caches of older versions are recomputed.
# 2: silhouette centred in float64, 1-NN ties to the lowest index; 3: MAP@R, R-precision,
# precision@1, NMI, AMI of the test split; 4: per-class accuracy and the median margins.
METRICS_VERSION = 4
METRICS_GROUP = "metrics"
COLUMNS = ["epoch", "split", "metric", "class", "value"]
Rows = list[tuple[int, str, str, str, float]]


def _epoch_group_name(epoch: int) -> str:
    return f"epoch_{epoch:05d}"


def _read_cache(handle: h5py.File) -> tuple[int | None, dict[int, Rows]]:
    """The cache's version and its rows by epoch (none when it is of another version)."""
    group = handle.get(METRICS_GROUP)
    if not isinstance(group, h5py.Group) or "metrics_version" not in group.attrs:
        return None, {}
    version = int(group.attrs["metrics_version"])
    if version != METRICS_VERSION:
        return version, {}
    cached: dict[int, Rows] = {}
    for item in group.values():
        if not isinstance(item, h5py.Group):
            continue
        epoch = int(item.attrs["epoch"])
        columns = [item[c].asstr()[()] for c in ("split", "metric", "class")]
        values = np.asarray(item["value"][()], dtype=np.float64)
        cached[epoch] = [
            (epoch, str(s), str(m), str(c), float(v))
            for s, m, c, v in zip(*columns, values, strict=True)
        ]
    return version, cached


def _write_cache(path: Path, computed: dict[int, Rows], *, drop_old: bool) -> bool:
    """Add epochs to the cache; False (nothing written) when another process writes the run or
    the file cannot be opened for writing.

    HDF5 has no journal: a process killed while it rewrites metadata can leave the whole file
    unreadable. So the cache is written into a copy that then replaces the store atomically, under
    the run's lock (no trainer or embed can write meanwhile): the store's epochs are never at risk.
    """
    try:
        with file_lock(lock_path_of(path), "metrics"):
            return _replace_with_cache(path, computed, drop_old=drop_old)
    except CLAnalyzeError:
        return False  # the run is being written: the values are returned, cached another time


def _replace_with_cache(path: Path, computed: dict[int, Rows], *, drop_old: bool) -> bool:
    try:
        with atomic_path(path) as temporary:
            shutil.copyfile(path, temporary)
            with h5py.File(temporary, "r+") as handle:
                _add_to_cache(handle, computed, drop_old=drop_old)
    except OSError:
        # A read-only folder or a full disk: the values are returned, cached another time.
        return False
    return True


def _add_to_cache(handle: h5py.File, computed: dict[int, Rows], *, drop_old: bool) -> None:
    if drop_old and METRICS_GROUP in handle:
        del handle[METRICS_GROUP]
    group = handle.require_group(METRICS_GROUP)
    group.attrs["metrics_version"] = METRICS_VERSION
    strings = h5py.string_dtype()
    for epoch, rows in computed.items():
        name = _epoch_group_name(epoch)
        if name in group:
            del group[name]
        entry = group.create_group(name)
        entry.attrs["epoch"] = epoch
        for index, column in ((1, "split"), (2, "metric"), (3, "class")):
            entry.create_dataset(column, data=[row[index] for row in rows], dtype=strings)
        values = np.array([row[4] for row in rows], dtype="f8")
        entry.create_dataset("value", data=values)


def _epoch_rows(store: RunStore, row: int, epoch: int) -> Rows:
    names = store.class_names
    # The silhouette's pairwise pass is the cost: on a GPU when there is one.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    centers = store.centers(row)
    # Each split read once: the train split is also the test split's retrieval reference.
    embedded = {
        split: (store.features(split, row), store.labels(split))
        for split in store.splits
        if store.has_features(split)
    }
    rows: Rows = []
    for split, (features, labels) in embedded.items():
        values = split_metrics(
            features,
            labels,
            store.num_classes,
            centers=centers,
            reference=embedded.get("train") if split == "test" else None,
            where=f"{store.path} epoch {epoch} split {split}",
            device=device,
        )
        classifier = store.classifier(row)
        geometry = (
            sample_geometry(features, labels, store.num_classes, classifier=classifier)
            if classifier is not None
            else None
        )
        predictions = _written_predictions(store, split, row)
        if predictions is not None:
            values.update(dynamics_values(labels, predictions, store.num_classes, geometry))
        for (metric, klass), value in values.items():
            rows.append((epoch, split, metric, "" if klass is None else names[klass], value))
    return rows


def _written_predictions(store: RunStore, split: str, row: int) -> np.ndarray | None:
    """A row's predictions, or None where a writer stored features without them."""
    dataset = store.hdf5.get(f"{split}/predictions")
    if not isinstance(dataset, h5py.Dataset) or dataset.shape[0] <= row:
        return None
    return np.asarray(dataset[row])


def _iter_missing(store: RunStore, cached: dict[int, Rows]) -> Iterator[tuple[int, int]]:
    for row, epoch in enumerate(store.epochs.tolist()):
        if epoch not in cached:
            yield row, int(epoch)


def load_metrics(
    run: Path | str, *, reporter: Reporter | None = None, rows: int | None = None
) -> pd.DataFrame:
    """Tidy metrics of every completed epoch and split: columns epoch, split, metric, class
    ('' for whole-split values) and value. Computes only what the cache lacks, and caches it
    unless a trainer is writing the store (or the file is not writable). ``rows``: use only
    the first that many rows (a snapshot of a live run taken earlier)."""
    path = store_path(run)
    computed: dict[int, Rows] = {}
    with RunStore(path, rows=rows) as store:
        version, cached = _read_cache(store.hdf5)
        epochs = [int(e) for e in store.epochs.tolist()]
        missing = list(_iter_missing(store, cached))
        if reporter is not None and missing:
            reporter.start(f"metrics {store.name}", len(missing))
        for row, epoch in missing:
            computed[epoch] = _epoch_rows(store, row, epoch)
            if reporter is not None:
                reporter.advance(1)
    if computed:
        _write_cache(path, computed, drop_old=version != METRICS_VERSION)
    everything = {**cached, **computed}
    table = [r for epoch in epochs for r in everything.get(epoch, [])]
    frame = pd.DataFrame(table, columns=COLUMNS)
    return frame.astype(
        {"epoch": "int64", "split": str, "metric": str, "class": str, "value": "f8"}
    )


def export_metrics_csv(
    run: Path | str, path: Path | str, *, reporter: Reporter | None = None
) -> Path:
    """Write the tidy metrics table (epoch,split,metric,class,value) as CSV, whole or not at
    all; returns the path."""
    target = Path(path)
    frame = load_metrics(run, reporter=reporter)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as temporary:
            frame.to_csv(temporary, index=False)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CLAnalyzeError(f"cannot write {target} ({reason}): pick a writable path") from None
    return target

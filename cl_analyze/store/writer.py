"""Appending complete epochs to a store."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cl_analyze import __version__
from cl_analyze.atomic import partial_path
from cl_analyze.store.dimensions import label_dimensions
from cl_analyze.store.repair import rebuild
from cl_analyze.store.schema import FORMAT, SCHEMA_VERSION, store_path


class RunWriter:
    """Appends complete epochs to a store; an epoch is visible only once fully flushed."""

    def __init__(self, path: Path, handle: h5py.File) -> None:
        self.path = path
        self._file = handle

    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        dataset: str,
        class_names: list[str] | tuple[str, ...],
        feat_dim: int,
        splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
        history_names: list[str] | tuple[str, ...],
        with_centers: bool,
        evaluated_splits: tuple[str, ...] | None = None,
        config: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        with_classifier: bool = False,
    ) -> RunWriter:
        """A new store. ``splits`` maps a split name to ``(labels (N,), indices (N,))``;
        ``evaluated_splits`` (default: all) get per-epoch features and predictions;
        ``with_classifier``: per-epoch last-layer weight and bias (``/classifier``)."""
        path = store_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed once valid: a kill at any moment leaves either
        # no store or a complete empty one, never a file HDF5 cannot open.
        temporary = partial_path(path)
        temporary.unlink(missing_ok=True)
        handle = h5py.File(temporary, "w", libver="latest")
        try:
            cls._layout(
                handle,
                dataset=dataset,
                class_names=class_names,
                feat_dim=feat_dim,
                splits=splits,
                history_names=history_names,
                with_centers=with_centers,
                evaluated_splits=evaluated_splits,
                config=config,
                attrs=attrs,
            )
            if with_classifier:
                create_classifier_datasets(handle, len(class_names), feat_dim)
            handle.swmr_mode = True
            handle.flush()
            os.replace(temporary, path)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
        return cls(path, handle)

    @staticmethod
    def _layout(
        handle: h5py.File,
        *,
        dataset: str,
        class_names: list[str] | tuple[str, ...],
        feat_dim: int,
        splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
        history_names: list[str] | tuple[str, ...],
        with_centers: bool,
        evaluated_splits: tuple[str, ...] | None,
        config: Mapping[str, Any] | None,
        attrs: Mapping[str, Any] | None,
    ) -> None:
        import torch

        num_classes = len(class_names)
        root = handle.attrs
        root["format"] = FORMAT
        root["schema_version"] = SCHEMA_VERSION
        root["epochs_complete"] = 0
        root["config"] = json.dumps(dict(config or {}), sort_keys=True)
        root["dataset"] = dataset
        root["class_names"] = json.dumps(list(class_names))
        root["num_classes"] = num_classes
        root["feat_dim"] = feat_dim
        root["package_version"] = __version__
        root["torch_version"] = str(torch.__version__)
        root["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        root["hostname"] = socket.gethostname()
        for key, value in (attrs or {}).items():
            root[key] = value
        handle.create_dataset("epochs", shape=(0,), maxshape=(None,), dtype="i4", chunks=(1024,))
        for name, (labels, indices) in splits.items():
            group = handle.create_group(name)
            n = len(labels)
            group.create_dataset("labels", data=np.asarray(labels, dtype="i4"))
            group.create_dataset("indices", data=np.asarray(indices, dtype="i8"))
            if evaluated_splits is None or name in evaluated_splits:
                create_epoch_datasets(group, n, feat_dim)
        if with_centers:
            create_per_epoch(handle, "centers", (num_classes, feat_dim), "f4")
        history = handle.create_group("history")
        for name in history_names:
            history.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        label_dimensions(handle)

    @classmethod
    def resume(
        cls, path: Path | str, keep_rows: int, config: Mapping[str, Any] | None = None
    ) -> RunWriter:
        """Reopen for appending after the first ``keep_rows`` rows, dropping any later ones;
        ``config`` replaces the stored one (a resume may extend the epochs).

        The file is rebuilt from a reader's view first: that also clears the open-for-write flag
        that a killed SWMR writer leaves behind, which HDF5 otherwise refuses to reopen. The
        caller holds the run's lock.
        """
        path = store_path(path)
        rebuild(path, keep_rows=keep_rows)
        handle = h5py.File(path, "r+", libver="latest")
        if config is not None:
            handle.attrs["config"] = json.dumps(dict(config), sort_keys=True)
        handle.swmr_mode = True
        return cls(path, handle)

    @property
    def rows(self) -> int:
        return int(self._file.attrs["epochs_complete"])

    def append_epoch(
        self,
        epoch: int,
        *,
        scalars: Mapping[str, float],
        features: Mapping[str, np.ndarray] | None = None,
        predictions: Mapping[str, np.ndarray] | None = None,
        centers: np.ndarray | None = None,
        classifier: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Write one row, then mark it complete: a crash before the mark leaves it invisible.
        ``classifier`` = (weight (C, D), bias (C,)) goes where the store has ``/classifier``
        (a resumed version-1 store has none); a store with it and no value given gets NaN."""
        handle = self._file
        row = self.rows
        pending: list[tuple[h5py.Dataset, Any]] = [(handle["epochs"], epoch)]
        for split, values in (features or {}).items():
            pending.append((handle[f"{split}/features"], np.asarray(values, dtype="f4")))
        for split, values in (predictions or {}).items():
            pending.append((handle[f"{split}/predictions"], np.asarray(values, dtype="i4")))
        if centers is not None:
            pending.append((handle["centers"], np.asarray(centers, dtype="f4")))
        if "classifier" in handle:
            weight_set, bias_set = handle["classifier/weight"], handle["classifier/bias"]
            weight, bias = classifier or (
                np.full(weight_set.shape[1:], np.nan),
                np.full(bias_set.shape[1:], np.nan),
            )
            pending.append((weight_set, np.asarray(weight, dtype="f4")))
            pending.append((bias_set, np.asarray(bias, dtype="f4")))
        for name, dataset in handle["history"].items():
            pending.append((dataset, float(scalars.get(name, np.nan))))
        for dataset, value in pending:
            dataset.resize(row + 1, axis=0)
            dataset[row] = value
            dataset.flush()
        # modify() writes in place; plain assignment deletes and recreates the attribute, which
        # a kill between the two would leave missing.
        handle.attrs.modify("epochs_complete", row + 1)
        handle.flush()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing (a full disk, say): closing may fail too, and must not hide the cause.
        with contextlib.suppress(Exception):
            self.close()


def create_per_epoch(
    group: h5py.Group, name: str, row: tuple[int, ...], dtype: str, *, rows: int = 0
) -> None:
    """A dataset of ``rows`` epochs of shape ``row``, extendible along the epoch axis, one chunk
    per epoch (an epoch is written, and read, whole)."""
    group.create_dataset(
        name, shape=(rows, *row), maxshape=(None, *row), chunks=(1, *row), dtype=dtype
    )


def create_epoch_datasets(group: h5py.Group, n: int, feat_dim: int, rows: int = 0) -> None:
    """A split's per-epoch ``features`` and ``predictions``, extendible along the epoch axis."""
    create_per_epoch(group, "features", (n, feat_dim), "f4", rows=rows)
    create_per_epoch(group, "predictions", (n,), "i4", rows=rows)
    label_dimensions(group.file)


def create_classifier_datasets(handle: h5py.File, num_classes: int, feat_dim: int) -> None:
    """``/classifier/weight`` (E, C, D) and ``/classifier/bias`` (E, C): the last layer per epoch,
    extendible along the epoch axis like the features, so it is written in the same commit."""
    group = handle.create_group("classifier")
    create_per_epoch(group, "weight", (num_classes, feat_dim), "f4")
    create_per_epoch(group, "bias", (num_classes,), "f4")

"""Reading a store's completed rows, safe beside a live writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.extras import require_extra
from cl_analyze.store.hdf5 import (
    check_not_truncated,
    flagged_open_for_write,
    int_attr,
    json_attr,
    open_hdf5,
)
from cl_analyze.store.lock import lock_holder, lock_path_of
from cl_analyze.store.repair import clear_write_flag
from cl_analyze.store.schema import (
    FORMAT,
    SCHEMA_VERSION,
    SPLITS,
    STORE_NAME,
    store_path,
)


class RunStore:
    """Read-only view of a store's completed rows, safe while a writer appends to it.

    Use as a context manager, or call ``close``. All arrays are sliced to ``epochs_complete``,
    or to ``rows`` when given: a snapshot taken earlier (a report reads ``epochs_complete`` once
    and every later read of a live run uses that many rows).
    Opening checks the schema (a damaged or foreign file is a one-line error) and clears the
    open-for-write flag a killed writer left, so plain h5py reads the file afterwards.
    """

    def __init__(self, run: Path | str, *, rows: int | None = None) -> None:
        self.path = store_path(run)
        alive = lock_holder(lock_path_of(self.path)) is not None
        if not alive and self.path.is_file():
            check_not_truncated(self.path)
            if flagged_open_for_write(self.path):
                clear_write_flag(self.path)
        self._context = open_hdf5(self.path, writer_alive=alive)
        self._file = self._context.__enter__()
        try:
            self._read_schema()
            if rows is not None:
                self._limit_rows(rows)
        except BaseException:
            self.close()
            raise

    def _read_schema(self) -> None:
        handle, path = self._file, self.path
        if handle.attrs.get("format") != FORMAT:
            raise CLAnalyzeError(
                f"{path} is not a cl-analyze run store: write it with `cl-analyze train`"
                " or `cl_analyze.store.RunWriter`"
            )
        self.schema_version = int_attr(handle, "schema_version", path)
        if self.schema_version > SCHEMA_VERSION:
            raise CLAnalyzeError(
                f"{path} has schema version {self.schema_version}, newer than this cl-analyze"
                f" reads ({SCHEMA_VERSION}): upgrade cl-analyze"
            )
        self.rows = int_attr(handle, "epochs_complete", path)
        self.num_classes = int_attr(handle, "num_classes", path)
        self.feat_dim = int_attr(handle, "feat_dim", path)
        self.class_names: list[str] = json_attr(handle, "class_names", path, list)
        self.config: dict[str, Any] = json_attr(handle, "config", path, dict)
        self.dataset = str(handle.attrs.get("dataset", ""))
        problem = None
        if len(self.class_names) != self.num_classes:
            problem = f"{len(self.class_names)} class names for {self.num_classes} classes"
        elif not isinstance(handle.get("epochs"), h5py.Dataset):
            problem = "it has no /epochs dataset"
        elif not isinstance(handle.get("history"), h5py.Group):
            problem = "it has no /history group"
        elif not self.splits:
            problem = "it holds neither a train nor a test split"
        elif not 0 <= self.rows <= handle["epochs"].shape[0]:
            problem = (
                f"epochs_complete is {self.rows} but /epochs holds {handle['epochs'].shape[0]} rows"
            )
        else:
            problem = self._row_problem()
        if problem is not None:
            raise CLAnalyzeError(f"{path} is damaged: {problem}")
        self.attrs: dict[str, Any] = {
            k: (v.item() if isinstance(v, np.generic) else v) for k, v in handle.attrs.items()
        }

    def _limit_rows(self, rows: int) -> None:
        if rows > self.rows:
            raise CLAnalyzeError(
                f"{self.path} now has {self.rows} complete epochs, fewer than the {rows} read"
                " earlier (resumed or rewritten meanwhile): run the command again"
            )
        self.rows = max(rows, 0)

    def _row_problem(self) -> str | None:
        """Why the store cannot hold its completed rows, or None. (Per-split arrays may lag:
        a writer need not store every split every epoch.)"""
        handle = self._file
        for name in handle["history"]:
            item = handle["history"][name]
            if not isinstance(item, h5py.Dataset) or item.shape[0] < self.rows:
                return f"history/{name} holds fewer than the {self.rows} completed rows"
        for split in self.splits:
            for name in ("labels", "indices"):
                if not isinstance(handle[split].get(name), h5py.Dataset):
                    return f"{split}/{name} is missing"
        return None

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def hdf5(self) -> h5py.File:
        """The open file (read-only), for readers of groups beyond the schema (a cache)."""
        return self._file

    @property
    def name(self) -> str:
        return self.path.parent.name if self.path.name == STORE_NAME else self.path.stem

    @property
    def epochs(self) -> np.ndarray:
        """(E,) epoch number of each complete row."""
        return np.asarray(self._file["epochs"][: self.rows])

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if isinstance(self._file.get(s), h5py.Group))

    @property
    def has_centers(self) -> bool:
        return "centers" in self._file

    @property
    def has_classifier(self) -> bool:
        """Whether the store holds the last layer per epoch (schema version 2 on)."""
        return "classifier" in self._file

    def classifier(self, row: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(weight (C, D), bias (C,)) of one row's last layer; None for a store without it
        (version 1) or a row written without it (NaN: a version-1 run resumed)."""
        if not self.has_classifier:
            return None
        row = self._row(row)
        if self._file["classifier/weight"].shape[0] <= row:
            return None
        weight = np.asarray(self._file["classifier/weight"][row])
        bias = np.asarray(self._file["classifier/bias"][row])
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            return None
        return weight, bias

    def has_features(self, split: str) -> bool:
        return f"{split}/features" in self._file

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self._split(split)["labels"][()], dtype=np.int64)

    def indices(self, split: str) -> np.ndarray:
        return np.asarray(self._split(split)["indices"][()], dtype=np.int64)

    def features(self, split: str, row: int | None = None) -> np.ndarray:
        """(N, D) float32 for one row, or (E, N, D) for all complete rows."""
        if not self.has_features(split):
            raise CLAnalyzeError(
                f"{self.path} has no {split} features (trained with --no-embed?):"
                " rebuild them with `cl-analyze embed RUN --all-checkpoints`"
            )
        dataset = self._split(split)["features"]
        return np.asarray(dataset[: self.rows] if row is None else dataset[self._row(row)])

    def predictions(self, split: str, row: int | None = None) -> np.ndarray:
        """(N,) int predicted classes for one row, or (E, N) for all complete rows."""
        if f"{split}/predictions" not in self._file:
            raise CLAnalyzeError(
                f"{self.path} has no {split} predictions (trained with --no-embed?):"
                " rebuild them with `cl-analyze embed RUN --all-checkpoints`"
            )
        dataset = self._split(split)["predictions"]
        return np.asarray(dataset[: self.rows] if row is None else dataset[self._row(row)])

    def centers(self, row: int | None = None) -> np.ndarray | None:
        """(C, D) for one row, (E, C, D) for all, or None without learned centers."""
        if not self.has_centers:
            return None
        dataset = self._file["centers"]
        return np.asarray(dataset[: self.rows] if row is None else dataset[self._row(row)])

    @property
    def history(self) -> dict[str, np.ndarray]:
        group = self._file["history"]
        return {name: np.asarray(group[name][: self.rows]) for name in group}

    def to_xarray(self, split: str = "test") -> Any:
        """The store's completed rows as an ``xarray.Dataset`` (loaded in memory) with named
        dimensions ``epoch``, ``sample``, ``dim`` and ``class`` and their coordinates: one
        split's ``features`` (epoch, sample, dim), ``predictions`` (epoch, sample), ``labels``
        and ``indices`` (sample), ``centers`` (epoch, class, dim) when learned, and every
        ``/history`` scalar (epoch). Needs ``pip install 'cl-analyze[xarray]'``."""
        xr = require_extra("xarray", "xarray", "RunStore.to_xarray")
        variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
            name: (("epoch",), values) for name, values in self.history.items()
        }
        variables["labels"] = (("sample",), self.labels(split))
        variables["indices"] = (("sample",), self.indices(split))
        if self.has_features(split):
            variables["features"] = (("epoch", "sample", "dim"), self.features(split))
        if f"{split}/predictions" in self._file:
            variables["predictions"] = (("epoch", "sample"), self.predictions(split))
        centers = self.centers()
        if centers is not None:
            variables["centers"] = (("epoch", "class", "dim"), centers)
        coords = {
            "epoch": self.epochs.astype(np.int64),
            "sample": np.arange(len(variables["labels"][1])),
            "dim": np.arange(self.feat_dim),
            "class": list(self.class_names),
        }
        attrs = {"run": str(self.run_dir), "split": split, "dataset": self.dataset}
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    def _row(self, row: int) -> int:
        if not -self.rows <= row < self.rows:
            raise CLAnalyzeError(f"row {row} is not complete in {self.path} ({self.rows} rows)")
        return row % self.rows

    def _split(self, split: str) -> h5py.Group:
        if split not in self.splits:
            raise CLAnalyzeError(
                f"{self.path} holds no {split!r} split (it has {', '.join(self.splits)})"
            )
        group = self._file[split]
        assert isinstance(group, h5py.Group)
        return group

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

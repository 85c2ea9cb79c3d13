"""The run store: one HDF5 file per run holding every epoch's embeddings, centers and scalars.

Schema (version 1; see docs/store.md):

    /                       attrs: format, schema_version, epochs_complete, config (JSON),
                                   dataset, class_names (JSON), num_classes, feat_dim,
                                   package_version, torch_version, created, device, hardware
    /epochs                 (E,)       int32    epoch number of each row (0 = before training)
    /<split>/labels         (N,)       int32    split in {train, test}
    /<split>/indices        (N,)       int64    position of each sample in the original split
    /<split>/features       (E, N, D)  float32  chunked one epoch per chunk
    /<split>/predictions    (E, N)     int32
    /centers                (E, C, D)  float32  learned centers (center loss only)
    /history/<scalar>       (E,)       float64  per-epoch scalars (NaN where not applicable)

Rows ``[0, epochs_complete)`` are complete; anything beyond is an epoch being written. The writer
uses HDF5 SWMR, so a reader can open the file while training appends to it, and a killed writer
leaves a file whose completed epochs read back intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cl_analyze import __version__
from cl_analyze.errors import CLAnalyzeError

FORMAT = "cl-analyze-run"
SCHEMA_VERSION = 1
STORE_NAME = "run.h5"
LOCK_NAME = "run.lock"
SPLITS = ("train", "test")


def store_path(run: Path | str) -> Path:
    """``run.h5`` inside a run folder, or the file itself when given one."""
    run = Path(run)
    return run if run.suffix in (".h5", ".hdf5") else run / STORE_NAME


def hardware_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu})"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


# --- writing -----------------------------------------------------------------------------------


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
    ) -> RunWriter:
        """A new store. ``splits`` maps a split name to ``(labels (N,), indices (N,))``;
        ``evaluated_splits`` (default: all) get per-epoch features and predictions."""
        import torch

        path = store_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = h5py.File(path, "w", libver="latest")
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
            handle.create_dataset(
                "centers",
                shape=(0, num_classes, feat_dim),
                maxshape=(None, num_classes, feat_dim),
                chunks=(1, num_classes, feat_dim),
                dtype="f4",
            )
        history = handle.create_group("history")
        for name in history_names:
            history.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        writer = cls(path, handle)
        writer._start()
        return writer

    @classmethod
    def resume(
        cls, path: Path | str, keep_rows: int, config: Mapping[str, Any] | None = None
    ) -> RunWriter:
        """Reopen for appending after the first ``keep_rows`` rows, dropping any later ones;
        ``config`` replaces the stored one (a resume may extend the epochs).

        The file is rebuilt from a reader's view first: that also clears the open-for-write flag
        that a killed SWMR writer leaves behind, which HDF5 otherwise refuses to reopen.
        """
        path = store_path(path)
        _rebuild(path, keep_rows)
        handle = h5py.File(path, "r+", libver="latest")
        if config is not None:
            handle.attrs["config"] = json.dumps(dict(config), sort_keys=True)
        writer = cls(path, handle)
        writer._start()
        return writer

    def _start(self) -> None:
        self._file.swmr_mode = True

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
    ) -> None:
        """Write one row, then mark it complete: a crash before the mark leaves it invisible."""
        handle = self._file
        row = self.rows
        pending: list[tuple[h5py.Dataset, Any]] = [(handle["epochs"], epoch)]
        for split, values in (features or {}).items():
            pending.append((handle[f"{split}/features"], np.asarray(values, dtype="f4")))
        for split, values in (predictions or {}).items():
            pending.append((handle[f"{split}/predictions"], np.asarray(values, dtype="i4")))
        if centers is not None:
            pending.append((handle["centers"], np.asarray(centers, dtype="f4")))
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

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_epoch_datasets(group: h5py.Group, n: int, feat_dim: int, rows: int = 0) -> None:
    """A split's per-epoch ``features`` and ``predictions``, extendible along the epoch axis."""
    group.create_dataset(
        "features",
        shape=(rows, n, feat_dim),
        maxshape=(None, n, feat_dim),
        chunks=(1, n, feat_dim),
        dtype="f4",
    )
    group.create_dataset(
        "predictions", shape=(rows, n), maxshape=(None, n), chunks=(1, n), dtype="i4"
    )


def _rebuild(path: Path, keep_rows: int) -> None:
    temporary = path.with_name(path.name + ".rebuild")
    with _open_for_reading(path) as source, h5py.File(temporary, "w", libver="latest") as target:
        rows = min(keep_rows, int(source.attrs.get("epochs_complete", 0)))

        def copy(name: str, item: h5py.Dataset | h5py.Group) -> None:
            if name.split("/")[0] == "metrics":
                return  # a cache keyed by epoch: rows dropped here would leave stale values
            if isinstance(item, h5py.Group):
                target.require_group(name)
                for key, value in item.attrs.items():
                    target[name].attrs[key] = value
                return
            data = item[:rows] if item.maxshape[0] is None else item[()]
            chunks = item.chunks
            maxshape = item.maxshape
            created = target.create_dataset(
                name,
                shape=data.shape,
                maxshape=maxshape,
                chunks=chunks,
                dtype=item.dtype,
            )
            if data.size:
                created[...] = data
            for key, value in item.attrs.items():
                created.attrs[key] = value

        source.visititems(copy)
        for key, value in source.attrs.items():
            target.attrs[key] = value
        target.attrs["epochs_complete"] = rows
    os.replace(temporary, path)


# --- reading -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_for_reading(path: Path) -> Iterator[h5py.File]:
    if not path.is_file():
        raise CLAnalyzeError(
            f"no run store at {path}: pass a run folder written by `cl-analyze train` or `embed`"
        )
    try:
        handle = h5py.File(path, "r", swmr=True)
    except OSError:
        # Files written without libver='latest' cannot be opened in SWMR mode.
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise CLAnalyzeError(
                f"cannot open run store {path} ({error}): is it an HDF5 file from cl-analyze?"
            ) from error
    try:
        yield handle
    finally:
        handle.close()


class RunStore:
    """Read-only view of a store's completed rows, safe while a writer appends to it.

    Use as a context manager, or call ``close``. All arrays are sliced to ``epochs_complete``.
    """

    def __init__(self, run: Path | str) -> None:
        self.path = store_path(run)
        self._context = _open_for_reading(self.path)
        self._file = self._context.__enter__()
        attrs = self._file.attrs
        if attrs.get("format") != FORMAT:
            self.close()
            raise CLAnalyzeError(
                f"{self.path} is not a cl-analyze run store: write it with `cl-analyze train`"
                " or `cl_analyze.store.RunWriter`"
            )
        self.rows = int(attrs["epochs_complete"])
        self.schema_version = int(attrs["schema_version"])
        self.dataset = str(attrs["dataset"])
        self.class_names: list[str] = json.loads(attrs["class_names"])
        self.num_classes = int(attrs["num_classes"])
        self.feat_dim = int(attrs["feat_dim"])
        self.config: dict[str, Any] = json.loads(attrs.get("config", "{}"))
        self.attrs: dict[str, Any] = {
            k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()
        }

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.path.parent.name if self.path.name == STORE_NAME else self.path.stem

    @property
    def epochs(self) -> np.ndarray:
        """(E,) epoch number of each complete row."""
        return np.asarray(self._file["epochs"][: self.rows])

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self._file)

    @property
    def has_centers(self) -> bool:
        return "centers" in self._file

    @property
    def is_training(self) -> bool:
        """True while the writer that owns the store is alive (a crashed one is not)."""
        return writer_alive(self.run_dir)

    def has_features(self, split: str) -> bool:
        return f"{split}/features" in self._file

    def row_of(self, epoch: int) -> int:
        rows = np.flatnonzero(self.epochs == epoch)
        if len(rows) == 0:
            known = self.epochs
            span = f"{known.min()}..{known.max()}" if len(known) else "none yet"
            raise CLAnalyzeError(
                f"epoch {epoch} is not in {self.path} (completed epochs: {span}): pick one of those"
            )
        return int(rows[0])

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

    def _row(self, row: int) -> int:
        if not -self.rows <= row < self.rows:
            raise CLAnalyzeError(f"row {row} is not complete in {self.path} ({self.rows} rows)")
        return row % self.rows

    def _split(self, split: str) -> h5py.Group:
        if split not in self._file:
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


def lock_holder(run_dir: Path, lock_name: str = LOCK_NAME) -> tuple[int, str] | None:
    """(pid, role) of the live process holding the folder's lock, or None."""
    lock = Path(run_dir) / lock_name
    try:
        pid_text, host, *rest = lock.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    role = rest[0] if rest else "train"
    if host != socket.gethostname():
        return pid, role  # cannot check another machine's process: assume it lives
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid, role


def writer_alive(run_dir: Path) -> bool:
    """True while a trainer writes the run (a crashed one does not count)."""
    holder = lock_holder(run_dir)
    return holder is not None and holder[1] == "train"


@contextlib.contextmanager
def run_lock(run_dir: Path, role: str, lock_name: str = LOCK_NAME) -> Iterator[None]:
    """Hold the run folder's lock: one writer (train, metrics, embed) at a time.

    Created with O_EXCL, so two processes can never both believe they hold it; a lock left by a
    dead process is taken over. ``lock_name`` lets a sweep folder use its own lock.
    """
    lock = Path(run_dir) / lock_name
    for _ in range(3):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock_holder(run_dir, lock_name)
            if holder is not None:
                raise CLAnalyzeError(
                    f"{run_dir} is being written by another process ({holder[1]}, pid"
                    f" {holder[0]}): wait for it to finish, or stop it"
                ) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{os.getpid()} {socket.gethostname()} {role}\n")
        break
    else:
        raise CLAnalyzeError(f"cannot lock {lock}: remove it if no process uses {run_dir}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)

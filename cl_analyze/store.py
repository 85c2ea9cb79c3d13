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
import ctypes
import fcntl
import functools
import json
import os
import platform
import re
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5f, h5p

from cl_analyze import __version__
from cl_analyze.atomic import atomic_path, partial_path
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

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing (a full disk, say): closing may fail too, and must not hide the cause.
        with contextlib.suppress(Exception):
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


def rebuild(path: Path, *, keep_rows: int | None = None) -> None:
    """Rewrite a store from a reader's view, atomically: drops rows from ``keep_rows`` on (and
    then the metrics cache, keyed by epoch) and clears a killed writer's open-for-write flag.
    The caller holds the lock: no one else writes the file meanwhile."""
    with atomic_path(path) as temporary, _open_hdf5(path, writer_alive=False) as source:
        complete = _int_attr(source, "epochs_complete", path)
        rows = complete if keep_rows is None else min(keep_rows, complete)
        drop_metrics = rows != complete
        with h5py.File(temporary, "w", libver="latest") as target:

            def copy(name: str, item: h5py.Dataset | h5py.Group) -> None:
                if drop_metrics and name.split("/")[0] == "metrics":
                    return  # a cache keyed by epoch: rows dropped here would leave stale values
                if isinstance(item, h5py.Group):
                    target.require_group(name)
                    for key, value in item.attrs.items():
                        target[name].attrs[key] = value
                    return
                extendible = item.maxshape[0] is None
                data = item[:rows] if extendible else item[()]
                created = target.create_dataset(
                    name,
                    shape=data.shape,
                    maxshape=item.maxshape,
                    chunks=item.chunks,
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


# --- reading -----------------------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# A reader beside a live SWMR writer may catch metadata mid-update and must retry (HDF5 tries
# 100 times, backing off); with no writer a failed checksum means damage, and retrying a truncated
# file that way takes minutes. So readers without a live writer try twice.
READ_ATTEMPTS_WITHOUT_WRITER = 2


def check_not_truncated(path: Path) -> None:
    """Fail at once on a file shorter than its superblock's end-of-file address.

    HDF5 checks this itself on a plain open, but not in SWMR mode, where it retries instead.
    Reads only the superblock (formats 0-3), so it costs nothing.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(96)
    if not head.startswith(HDF5_SIGNATURE):
        return  # no superblock at offset 0 (a user block): HDF5's own checks decide
    version = head[8]
    try:
        if version >= 2:
            width = head[9]
            base_at, eof_at = 12, 12 + 2 * width
        else:
            width = head[13]
            base_at = 24 if version == 0 else 28
            eof_at = base_at + 2 * width
        fmt = {4: "<I", 8: "<Q"}[width]
        base = struct.unpack_from(fmt, head, base_at)[0]
        end = struct.unpack_from(fmt, head, eof_at)[0]
    except (KeyError, struct.error):
        return
    if end != (1 << (8 * width)) - 1 and base + end > size:
        raise CLAnalyzeError(
            f"{path} is damaged: it is truncated ({size} of {base + end} bytes); restore it from"
            " a backup, or retrain"
        )


@functools.cache
def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py loaded, for the one setting h5py does not expose; None elsewhere."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libhdf5" in line}
    except OSError:
        return None
    for library_path in sorted(paths):
        if "libhdf5_hl" in library_path or ".so" not in library_path:
            continue
        try:
            library = ctypes.CDLL(library_path)
            setter = library.H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        setter.argtypes = [ctypes.c_int64, ctypes.c_uint]
        setter.restype = ctypes.c_int
        return library
    return None


def _open_swmr(path: Path, *, attempts: int | None) -> h5py.File:
    access = h5p.create(h5p.FILE_ACCESS)
    library = _hdf5_library()
    if attempts is not None and library is not None:
        library.H5Pset_metadata_read_attempts(access.id, attempts)
    file_id = h5f.open(os.fsencode(path), h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, access)
    return h5py.File(file_id)


def _open_error(path: Path, error: Exception) -> CLAnalyzeError:
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    return CLAnalyzeError(
        f"cannot open run store {path} ({reason}): it is damaged or not an HDF5 file from"
        " cl-analyze"
    )


def _is_write_flag(error: OSError) -> bool:
    return "already open for write" in str(error)


@contextlib.contextmanager
def _open_hdf5(path: Path, *, writer_alive: bool) -> Iterator[h5py.File]:
    """Open a store read-only, failing fast on damage. A plain open first (it checks the most);
    a file still flagged open-for-write is read in SWMR mode, as patiently as HDF5 likes beside a
    live writer and with bounded retries otherwise."""
    if not path.is_file():
        raise CLAnalyzeError(
            f"no run store at {path}: pass a run folder written by `cl-analyze train` or `embed`"
        )
    check_not_truncated(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        if not _is_write_flag(error):
            raise _open_error(path, error) from None
        try:
            handle = _open_swmr(
                path, attempts=None if writer_alive else READ_ATTEMPTS_WITHOUT_WRITER
            )
        except OSError as swmr_error:
            raise _open_error(path, swmr_error) from None
    try:
        yield handle
    finally:
        handle.close()


def clear_write_flag(path: Path) -> bool:
    """Make a store that a killed writer left flagged open-for-write readable by plain h5py again
    (what ``h5clear -s`` does), by rebuilding it under its lock. False, changing nothing, while a
    writer is alive or where the folder is not writable."""
    path = store_path(path)
    try:
        with file_lock(lock_path_of(path), "repair"):
            try:
                h5py.File(path, "r").close()
                return True  # fine already (another process repaired it), or damaged otherwise
            except OSError as error:
                if not _is_write_flag(error):
                    return False
            remove_stale_partials(path.parent)
            rebuild(path)
    except (CLAnalyzeError, OSError):
        return False
    return True


def _int_attr(handle: h5py.File, name: str, path: Path) -> int:
    value = handle.attrs.get(name)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "missing" if value is None else f"{value!r}, not an integer"
        raise CLAnalyzeError(f"{path} is damaged: its {name} attribute is {shown}")
    return value


def _json_attr(handle: h5py.File, name: str, path: Path, kind: type) -> Any:
    text = handle.attrs.get(name)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise CLAnalyzeError(
            f"{path} is damaged: its {name} attribute is not a JSON {kind.__name__}"
        )
    return value


class RunStore:
    """Read-only view of a store's completed rows, safe while a writer appends to it.

    Use as a context manager, or call ``close``. All arrays are sliced to ``epochs_complete``.
    Opening checks the schema (a damaged or foreign file is a one-line error) and clears the
    open-for-write flag a killed writer left, so plain h5py reads the file afterwards.
    """

    def __init__(self, run: Path | str) -> None:
        self.path = store_path(run)
        alive = lock_holder(lock_path_of(self.path)) is not None
        if not alive and self.path.is_file():
            check_not_truncated(self.path)
            if flagged_open_for_write(self.path):
                clear_write_flag(self.path)
        self._context = _open_hdf5(self.path, writer_alive=alive)
        self._file = self._context.__enter__()
        try:
            self._read_schema()
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
        self.schema_version = _int_attr(handle, "schema_version", path)
        if self.schema_version > SCHEMA_VERSION:
            raise CLAnalyzeError(
                f"{path} has schema version {self.schema_version}, newer than this cl-analyze"
                f" reads ({SCHEMA_VERSION}): upgrade cl-analyze"
            )
        self.rows = _int_attr(handle, "epochs_complete", path)
        self.num_classes = _int_attr(handle, "num_classes", path)
        self.feat_dim = _int_attr(handle, "feat_dim", path)
        self.class_names: list[str] = _json_attr(handle, "class_names", path, list)
        self.config: dict[str, Any] = _json_attr(handle, "config", path, dict)
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


def flagged_open_for_write(path: Path) -> bool:
    """True for a store a writer holds, or held when it was killed (HDF5's SWMR-write flag)."""
    try:
        h5py.File(path, "r").close()
    except OSError as error:
        return _is_write_flag(error)
    return False


# --- the run folder's lock ---------------------------------------------------------------------

# A lock probe holds a shared lock for microseconds; a writer retries this long before it
# concludes that another process holds the lock.
LOCK_RETRY_SECONDS = 0.5


def lock_path_of(store: Path) -> Path:
    """The lock guarding a store: ``run.lock`` beside ``run.h5``, ``x.lock`` beside ``x.h5``."""
    return store.with_suffix(".lock")


def _describe_holder(lock: Path) -> tuple[int, str]:
    try:
        pid_text, _host, *rest = lock.read_text().split()
        return int(pid_text), rest[0] if rest else "train"
    except (OSError, ValueError):
        return 0, "unknown"  # being written by its new holder this very moment


def lock_holder(lock: Path) -> tuple[int, str] | None:
    """(pid, role) of the process holding ``lock``, or None when no process holds it.

    The lock is an ``flock`` on the file, which the kernel releases when its holder dies: a
    killed process's lock is never mistaken for a live one, whatever the file says.
    """
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_holder(lock)
    except OSError:
        return None
    finally:
        os.close(descriptor)  # also releases the probe's shared lock
    return None


def writer_alive(run_dir: Path) -> bool:
    """True while a trainer writes the run (a crashed one does not count)."""
    holder = lock_holder(Path(run_dir) / LOCK_NAME)
    return holder is not None and holder[1] == "train"


def _acquire(lock: Path, role: str) -> int:
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise CLAnalyzeError(
                f"cannot write in {lock.parent} ({error.strerror}): pick a writable folder"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            pid, holder_role = _describe_holder(lock)
            raise CLAnalyzeError(
                f"{lock.parent} is being written by another process ({holder_role}, pid {pid}):"
                " wait for it to finish, or stop it"
            ) from None
        except OSError as error:
            os.close(descriptor)
            raise CLAnalyzeError(
                f"cannot lock {lock} ({error.strerror}): the filesystem does not support file"
                " locks; use a local folder"
            ) from None
        # The previous holder unlinks the file as it lets go: a lock taken on the unlinked file
        # guards nothing, so take it again on the file now at that path.
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        held = os.fstat(descriptor)
        if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()} {socket.gethostname()} {role}\n".encode())
            return descriptor
        os.close(descriptor)


@contextlib.contextmanager
def file_lock(lock: Path, role: str) -> Iterator[None]:
    """Hold ``lock`` exclusively: one writer (train, metrics, embed, repair) at a time.

    An ``flock`` taken atomically by the kernel: two processes can never both hold it, and a
    dead holder's lock frees itself. The file names the holder (pid, host, role) for messages.
    """
    descriptor = _acquire(lock, role)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before letting go, so no one locks a file about to vanish
        os.close(descriptor)


@contextlib.contextmanager
def run_lock(run_dir: Path, role: str, lock_name: str = LOCK_NAME) -> Iterator[None]:
    """Hold a run (or sweep) folder's lock; see ``file_lock``."""
    with file_lock(Path(run_dir) / lock_name, role):
        yield


# --- what a run folder holds -------------------------------------------------------------------

# Every file a run folder can hold, what `--overwrite` may delete: the store, the config, the
# checkpoints and the lock, and the partial files of interrupted writes (older names included).
_RUN_FILE = re.compile(r"run\.h5|config\.json|(last|best|epoch_\d+)\.pt|run\.lock")
_PARTIAL_FILE = re.compile(
    r"(run|config|last|best|epoch_\d+)\.partial\.(h5|json|pt)"
    r"|((last|best|epoch_\d+)\.pt|config\.json)\.tmp|run\.h5\.(rebuild|metrics-tmp|embed-tmp)"
)


def is_run_file(name: str) -> bool:
    """True for a file name that belongs to a run folder (final or partial)."""
    return _RUN_FILE.fullmatch(name) is not None or _PARTIAL_FILE.fullmatch(name) is not None


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the partial files interrupted writes left in a run folder (call under its lock)."""
    removed = []
    for path in folder.iterdir():
        if _PARTIAL_FILE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed

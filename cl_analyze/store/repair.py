"""Rewriting a store from a reader's view: dropping rows, clearing a killed writer's flag."""

from __future__ import annotations

from pathlib import Path

import h5py

from cl_analyze.atomic import atomic_path
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store.dimensions import SCALE_ATTRIBUTES, label_dimensions
from cl_analyze.store.hdf5 import int_attr, is_write_flag_error, open_hdf5
from cl_analyze.store.lock import file_lock, lock_path_of
from cl_analyze.store.schema import remove_stale_partials, store_path


def rebuild(path: Path, *, keep_rows: int | None = None) -> None:
    """Rewrite a store from a reader's view, atomically: drops rows from ``keep_rows`` on (and
    then the metrics cache, keyed by epoch) and clears a killed writer's open-for-write flag.
    The caller holds the lock: no one else writes the file meanwhile."""
    with atomic_path(path) as temporary, open_hdf5(path, writer_alive=False) as source:
        complete = int_attr(source, "epochs_complete", path)
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
                    if key not in SCALE_ATTRIBUTES:  # references into the source file
                        created.attrs[key] = value

            source.visititems(copy)
            for key, value in source.attrs.items():
                target.attrs[key] = value
            target.attrs["epochs_complete"] = rows
            label_dimensions(target)


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
                if not is_write_flag_error(error):
                    return False
            remove_stale_partials(path.parent)
            rebuild(path)
    except (CLAnalyzeError, OSError):
        return False
    return True

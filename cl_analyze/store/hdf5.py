"""Opening a store's HDF5 file read-only, failing fast on damage."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5f, h5p

from cl_analyze.errors import CLAnalyzeError

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


def is_write_flag_error(error: OSError) -> bool:
    return "already open for write" in str(error)


@contextlib.contextmanager
def open_hdf5(path: Path, *, writer_alive: bool) -> Iterator[h5py.File]:
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
        if not is_write_flag_error(error):
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


def flagged_open_for_write(path: Path) -> bool:
    """True for a store a writer holds, or held when it was killed (HDF5's SWMR-write flag)."""
    try:
        h5py.File(path, "r").close()
    except OSError as error:
        return is_write_flag_error(error)
    return False


def int_attr(handle: h5py.File, name: str, path: Path) -> int:
    value = handle.attrs.get(name)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "missing" if value is None else f"{value!r}, not an integer"
        raise CLAnalyzeError(f"{path} is damaged: its {name} attribute is {shown}")
    return value


def json_attr(handle: h5py.File, name: str, path: Path, kind: type) -> Any:
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

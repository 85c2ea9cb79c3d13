"""Files that appear whole or not at all: write under a temporary name, then rename into place.

A kill, a full disk or an exception in the middle of a write leaves the previous file (or no
file) at the final path, never a truncated one that looks complete. The temporary keeps the
extension (``last.partial.pt``), because some writers (matplotlib, ffmpeg) pick the format by it,
and it is recognisable, so the next command that owns the folder can remove a stale one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial"


def partial_path(path: Path) -> Path:
    """``dir/name.ext`` -> ``dir/name.partial.ext``: where ``path`` is written before the rename."""
    return path.with_name(f"{path.stem}{PARTIAL_MARK}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any error it goes."""
    temporary = partial_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``Path.write_text`` that never leaves half a file behind."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)

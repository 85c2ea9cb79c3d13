"""What a run store is: its format and version, the files of a run folder."""

from __future__ import annotations

import re
from pathlib import Path

FORMAT = "cl-analyze-run"


# 2: the classifier's weight and bias per epoch (/classifier). Version-1 stores (features without
# a classifier) are still read; what needs the classifier is skipped for them.
SCHEMA_VERSION = 2


STORE_NAME = "run.h5"


SPLITS = ("train", "test")


def store_path(run: Path | str) -> Path:
    """``run.h5`` inside a run folder, or the file itself when given one."""
    run = Path(run)
    return run if run.suffix in (".h5", ".hdf5") else run / STORE_NAME


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

"""Which folder a run goes into, and what may be done to it."""

from __future__ import annotations

from pathlib import Path

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import (
    FORMAT,
    LOCK_NAME,
    STORE_NAME,
    RunStore,
    is_run_file,
)
from cl_analyze.training.checkpoints import (
    BEST,
    LAST,
)


def next_run_dir(root: Path, prefix: str = "run") -> Path:
    """Claim ``root/<prefix>N`` for the next free N (mkdir is atomic, so parallel runs differ)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [
        int(p.name[len(prefix) :])
        for p in root.iterdir()
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    ]
    number = max(taken, default=0) + 1
    while True:
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that cannot take this run; changes nothing.

    A new run goes into a new or empty folder, or replaces a run with ``overwrite``. A folder
    holding anything that is not part of a run (a subfolder, another program's config.json, a
    thesis) is never written into, let alone cleared.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise CLAnalyzeError(f"{run_dir} is a file, not a run folder: pass another --out")
    if not run_dir.exists():
        if resume:
            raise CLAnalyzeError(
                f"--resume {run_dir}: no run there (no such folder): check the path"
            )
        return
    try:
        entries = sorted(run_dir.iterdir())
    except OSError as error:
        raise CLAnalyzeError(
            f"cannot read {run_dir} ({error.strerror}): pick another --out"
        ) from None
    names = {entry.name for entry in entries}
    has_run = bool(names & {STORE_NAME, LAST, BEST}) or any(
        name.startswith("epoch_") and name.endswith(".pt") for name in names
    )
    if resume:
        if not has_run:
            raise CLAnalyzeError(
                f"--resume {run_dir}: no run there (no {STORE_NAME} or {LAST}):"
                " point it at a folder written by `cl-analyze train`"
            )
        return
    foreign = [entry.name for entry in entries if not (entry.is_file() and is_run_file(entry.name))]
    if not has_run and "config.json" in names:
        foreign.append("config.json")  # ours is only ever written beside a store
    if foreign:
        listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CLAnalyzeError(
            f"{run_dir} holds files that are not part of a cl-analyze run ({listed}): a new run"
            " goes into a new or empty folder (or replaces a run with --overwrite); pick"
            " another --out"
        )
    if has_run and not overwrite:
        raise CLAnalyzeError(
            f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to replace"
            " it, or another --out"
        )
    if has_run and (run_dir / STORE_NAME).is_file() and not _is_cl_analyze_store(run_dir):
        raise CLAnalyzeError(
            f"{run_dir / STORE_NAME} is not a cl-analyze run store: --overwrite replaces only a"
            " cl-analyze run; pick another --out"
        )


def _is_cl_analyze_store(run_dir: Path) -> bool:
    """False only for an HDF5 file that opens and is not ours (a damaged one of ours is ours)."""
    import h5py

    try:
        with h5py.File(run_dir / STORE_NAME, "r", locking=False) as handle:
            return handle.attrs.get("format") == FORMAT
    except OSError:
        return True


def clear_run(run_dir: Path) -> None:
    """Delete the files of the run being replaced: only those (checked again under the lock)."""
    check_run_folder(run_dir, resume=False, overwrite=True)
    for child in run_dir.iterdir():
        if child.name != LOCK_NAME and child.is_file() and is_run_file(child.name):
            child.unlink()


def check_restartable(run_dir: Path) -> None:
    """A run without last.pt restarts from scratch only if nothing trained was stored (it was
    killed before its first checkpoint); otherwise last.pt went missing and that is an error."""
    rows = 0
    if (run_dir / STORE_NAME).is_file():
        with RunStore(run_dir) as store:  # a store it cannot read is an error, never replaced
            rows = store.rows
    if rows > 1:
        raise CLAnalyzeError(
            f"{run_dir} stores {rows} epochs but has no {LAST} to resume from: restore {LAST},"
            " or replace the run with --overwrite"
        )

"""``cl-analyze export RUN --to tensorboard|wandb``: the target's folder, written whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.export.content import ExportOptions
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore, store_path


def default_out(run: Path, target: str) -> Path:
    """``tensorboard/<run>``: ``tensorboard --logdir tensorboard`` shows every exported run side
    by side; ``wandb``: wandb's own folder, where it keeps one offline run per export."""
    with RunStore(run) as store:
        name = store.name
    return Path("tensorboard") / name if target == "tensorboard" else Path("wandb")


def export_run(run: Path, options: ExportOptions, reporter: Reporter | None = None) -> Path:
    """Export one run; returns the folder written (TensorBoard) or wandb's offline run folder."""
    if not store_path(run).is_file():
        raise CLAnalyzeError(f"{run} holds no run store (run.h5): give a run folder")
    out = options.out if options.out is not None else default_out(run, options.target)
    if options.target == "wandb":
        from cl_analyze.export.to_wandb import write_wandb

        return write_wandb(run, out, options, reporter)
    return _export_tensorboard(run, out, options, reporter)


def _export_tensorboard(
    run: Path, out: Path, options: ExportOptions, reporter: Reporter | None
) -> Path:
    from cl_analyze.export.to_tensorboard import write_tensorboard

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLAnalyzeError(
            f"{out} exists and is not empty: pick a new --out (export never overwrites)"
        )
    # Written beside under a new hidden name, renamed when complete: the folder TensorBoard
    # reads appears whole or not at all (a killed export leaves only its own hidden folder).
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        write_tensorboard(run, partial, options, reporter)
        if out.exists():
            out.rmdir()  # the empty folder checked above
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out

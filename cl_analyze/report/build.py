"""`cl-analyze report`: one self-contained folder per write-up (index.html, report.md, summary.json,
metrics.csv, figures/) built from one or more run stores.

The page is described once as a list of blocks (heading, paragraph, table, figure, animation) and
rendered twice, to HTML and to Markdown, so both say the same thing and every run-provided string
(folder names, config values, class names) goes through the one escaping function of each format.
The folder is built next to its destination and swapped in whole: a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import (
    SeedGroup,
    group_comparisons,
    group_differences,
    metrics_at,
)
from cl_analyze.progress import Reporter
from cl_analyze.report.context import (
    DEFAULT_REPORTS,
    REPORT_FORMAT,
    REPORT_VERSION,
    ReportBuild,
    ReportOptions,
)
from cl_analyze.report.document import Heading, Paragraph, render_html, render_markdown
from cl_analyze.report.pooled import seed_groups
from cl_analyze.report.run import assemble_runs
from cl_analyze.report.runs import RunData, check_datasets, read_run, run_labels

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    from cl_analyze.sweep.state import SweepInfo


SWEEP_JSON = "sweep.json"  # cl_analyze.sweep.SWEEP_JSON (checked in tests), without its imports


def build_report(
    run_dirs: Sequence[Path], options: ReportOptions, reporter: Reporter | None = None
) -> Path:
    """Write the report folder and return its index.html. ``reporter`` shows progress."""
    if not run_dirs:
        raise CLAnalyzeError("no run given: pass one or more run folders, e.g. artifacts/run1")
    run_dirs = [Path(run) for run in run_dirs]
    for run in run_dirs:
        if not run.exists():
            raise CLAnalyzeError(f"run folder {run} does not exist: check the path")
    out = options.out or DEFAULT_REPORTS / run_dirs[0].resolve().name
    _check_replaceable(out, run_dirs)
    sweep = _sweep_of(run_dirs)
    if sweep is not None:
        run_dirs = sweep.run_dirs
    labels = run_labels(run_dirs)
    runs = [
        read_run(run, label, last_k=options.last_k, threshold=options.threshold, reporter=reporter)
        for run, label in zip(run_dirs, labels, strict=True)
    ]
    check_datasets(runs, options.allow_mixed)
    if options.epochs is not None:
        _check_epochs(runs, options.epochs)
    groups = seed_groups(runs, last_k=options.last_k, threshold=options.threshold)
    with _building(out) as folder:
        build = ReportBuild(folder, options, runs, reporter=reporter, groups=groups)
        if sweep is None:
            _with_plot_defaults(lambda: assemble_runs(build))
        else:
            from cl_analyze.report.sweep import assemble_sweep

            _with_plot_defaults(lambda: assemble_sweep(build, sweep.info, sweep.notes))
        if build.omitted:
            build.blocks.append(Heading(2, "Left out"))
            build.blocks.extend(Paragraph(reason) for reason in build.omitted)
        title = "cl-analyze report: " + ", ".join(run.label for run in runs)
        (folder / "index.html").write_text(render_html(title, build.blocks), encoding="utf-8")
        (folder / "report.md").write_text(render_markdown(build.blocks), encoding="utf-8")
        summary = summary_dict(runs, options, build.omitted, groups, build.explained)
        text = json.dumps(finite_json(summary), indent=2, allow_nan=False)
        (folder / "summary.json").write_text(text + "\n")
        metrics_frame(runs).to_csv(folder / "metrics.csv", index=False)
        if sweep is None:
            from cl_analyze.report.latex import tables_tex

            (folder / "tables.tex").write_text(tables_tex(runs), encoding="utf-8")
    return out / "index.html"


@dataclass(frozen=True)
class _Sweep:
    info: SweepInfo
    run_dirs: list[Path]
    notes: list[str]


def _sweep_of(run_dirs: Sequence[Path]) -> _Sweep | None:
    """The sweep when the one folder given holds a sweep.json; None for plain runs."""
    # Checked by name first: importing the sweep modules loads torch (seconds), plain runs skip it.
    sweeps = [run for run in run_dirs if (run / SWEEP_JSON).is_file()]
    if not sweeps:
        return None
    from cl_analyze.report.sweep import sweep_run_dirs

    if len(run_dirs) > 1:
        raise CLAnalyzeError(
            f"{sweeps[0]} is a sweep: report a sweep on its own (one folder), not with other runs"
        )
    info, folders, notes = sweep_run_dirs(run_dirs[0])
    return _Sweep(info, folders, notes)


def _with_plot_defaults(action: Callable[[], None]) -> None:
    # Figures are drawn on their own Agg canvases, never through pyplot: no window opens, and the
    # process's matplotlib backend stays whatever the caller (a notebook) chose.
    action()


def _check_epochs(runs: Sequence[RunData], epochs: Sequence[int | str]) -> None:
    for run in runs:
        numbers = {spec for spec in epochs if isinstance(spec, int)}
        missing = sorted(numbers - {int(e) for e in run.epochs})
        if missing:
            raise CLAnalyzeError(
                f"--epochs {', '.join(map(str, missing))} not recorded in {run.label}"
                f" (it has {int(run.epochs.min())}..{int(run.epochs.max())}): pick recorded epochs"
            )


def _check_replaceable(out: Path, run_dirs: Sequence[Path]) -> None:
    """Replace only a previous report (or an empty folder): never a run or unrelated files."""
    if not out.exists():
        return
    resolved = out.resolve()
    if any(resolved == run.resolve() or resolved in run.resolve().parents for run in run_dirs):
        raise CLAnalyzeError(f"--out {out} would overwrite a run folder: pick another --out")
    if not out.is_dir():
        raise CLAnalyzeError(f"--out {out} is a file: pick a folder path")
    if any(out.iterdir()) and not _is_report(out):
        raise CLAnalyzeError(
            f"--out {out} exists and is not a cl-analyze report: pick another --out or remove it"
        )


def _is_report(folder: Path) -> bool:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("format") == REPORT_FORMAT


@contextlib.contextmanager
def _building(out: Path) -> Iterator[Path]:
    """A temporary sibling folder, swapped in for ``out`` only once everything is written."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _recover_interrupted_builds(out)
        folder = Path(
            tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-", dir=out.parent)
        )
    except OSError as error:
        raise CLAnalyzeError(
            f"cannot write a report next to {out} ({error}): pick a writable --out"
        ) from None
    try:
        yield folder
        folder.chmod(0o755)  # mkdtemp's 0700 would hide the report from a web server
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(folder, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def _recover_interrupted_builds(out: Path) -> None:
    """Tidy what a killed report left beside ``out``: a half-built folder goes; a previous
    report moved aside for the swap comes back when the new one never arrived, else goes.
    Folders of a builder still running (its pid is in the name) are left alone."""
    for leftover in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")):
        kind, _, rest = leftover.name[len(out.name) + 2 :].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("building", "old") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            os.replace(leftover, out)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summary_dict(
    runs: Sequence[RunData],
    options: ReportOptions,
    omitted: Sequence[str],
    groups: Sequence[SeedGroup] = (),
    explained: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's numbers as JSON (schema: docs/report.md)."""
    entries = []
    for run in runs:
        result = run.result
        entries.append(
            {
                "name": run.label,
                "path": str(run.run_dir),
                "dataset": run.dataset,
                "loss": run.config.get("loss"),
                "training": run.training,
                "epochs_read": run.rows,
                "n_test": run.n_test,
                "warnings": [{"kind": w.kind, "text": w.text} for w in run.warnings],
                **result.to_dict(),
                "epochs_to_threshold": result.epoch_reaching_threshold,
                "metrics_at_peak": {
                    split: {
                        k: _json_number(v)
                        for k, v in metrics_at(run.metrics, result.peak_epoch, split).items()
                    }
                    for split in ("test", "train")
                },
                "metrics_at_last": {
                    split: {
                        k: _json_number(v)
                        for k, v in metrics_at(run.metrics, result.final_epoch, split).items()
                    }
                    for split in ("test", "train")
                },
                "decline_explained": (explained or {}).get(run.label),
            }
        )
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "last_k": options.last_k,
        "threshold": options.threshold,
        "omitted": list(omitted),
        "warnings": [
            {"run": w.run, "kind": w.kind, "text": w.text} for run in runs for w in run.warnings
        ],
        "runs": entries,
        "seed_groups": [group.to_dict() for group in groups],
        "seed_differences": group_differences(groups),
        "seed_comparisons": group_comparisons(groups),
    }


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by null: JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def metrics_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    """All runs' tidy metrics with a ``run`` column, plus each run's history as split 'history'."""
    frames = []
    for run in runs:
        history = pd.DataFrame(
            [
                {"epoch": int(epoch), "split": "history", "metric": name, "class": "", "value": v}
                for name, values in run.history.items()
                for epoch, v in zip(run.epochs, values, strict=True)
            ]
        )
        for frame in (history, run.metrics):
            if not frame.empty:
                frames.append(frame.assign(run=run.label))
    if not frames:
        return pd.DataFrame(columns=["run", "epoch", "split", "metric", "class", "value"])
    combined = pd.concat(frames, ignore_index=True)
    ordered = ["run", "epoch", "split", "metric", "class", "value"]
    return combined[ordered + [c for c in combined.columns if c not in ordered]]

"""`cl-analyze report`: one self-contained folder per write-up (index.html, report.md, summary.json,
metrics.csv, figures/) built from one or more run stores.

The page is described once as a list of blocks (heading, paragraph, table, figure, animation) and
rendered twice, to HTML and to Markdown, so both say the same thing and every run-provided string
(folder names, config values, class names) goes through the one escaping function of each format.
The folder is built next to its destination and swapped in whole: a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import (
    DEFAULT_LAST_K,
    DEFAULT_THRESHOLD,
    METRIC_WORDS,
    PeakDecline,
    RunNumbers,
    compare_runs,
    describe_change,
    metrics_at,
    peak_and_decline,
    percent,
    run_findings,
)
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore, store_path, writer_alive

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    from matplotlib.figure import Figure

    from cl_analyze.figures import FigureStyle
    from cl_analyze.plots import PlotRun
    from cl_analyze.sweep import SweepInfo

REPORT_FORMAT = "cl-analyze-report"
REPORT_VERSION = 1
FIGURES = "figures"
DEFAULT_REPORTS = Path("reports")
SWEEP_JSON = "sweep.json"  # cl_analyze.sweep.SWEEP_JSON (checked in tests), without its imports
# Config keys shown first in the setup table; the rest follow alphabetically.
LEADING_CONFIG_KEYS = ("loss", "dataset", "epochs", "lr", "center_weight", "center_lr", "seed")


@dataclass(frozen=True)
class ReportOptions:
    """What `cl-analyze report` was asked for."""

    out: Path | None = None  # default: reports/<first run's folder name>
    # Scatter epochs: numbers or first/peak/last; default: start, threshold, peak, last.
    epochs: tuple[int | str, ...] | None = None
    last_k: int = DEFAULT_LAST_K
    threshold: float = DEFAULT_THRESHOLD
    allow_mixed: bool = False
    animation: bool = True
    figures: bool = True  # False: text, tables and data only (fast)
    max_points: int = 2000  # per scatter panel / animation frame
    style: str = "slides"

    def __post_init__(self) -> None:
        if self.last_k < 1:
            raise CLAnalyzeError(f"--last-k must be >= 1, got {self.last_k}")
        if not 0 < self.threshold <= 1:
            raise CLAnalyzeError(
                f"--threshold must be an accuracy in (0, 100]%, got {self.threshold}"
            )
        if self.max_points < 1:
            raise CLAnalyzeError(f"--max-points must be >= 1, got {self.max_points}")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise CLAnalyzeError(f"--out {self.out} is a file: pass a folder for the report")


# --- the document model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # shown highlighted: a caveat the reader must not miss


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report folder, chosen by the report (never run-provided)
    caption: str


@dataclass(frozen=True)
class Animation:
    gif: str | None
    mp4: str | None
    caption: str


@dataclass(frozen=True)
class Gallery:
    """Figures side by side (one row in HTML, one after another in Markdown)."""

    images: tuple[Image, ...]
    caption: str


Block = Heading | Paragraph | Table | Image | Gallery | Animation


def _url(path: str) -> str:
    return urllib.parse.quote(path)


def render_html(title: str, blocks: Sequence[Block]) -> str:
    """A standalone page: inline style, no script, no network."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 4)
            anchor = re.sub(r"[^a-z0-9]+", "-", block.text.lower()).strip("-")
            parts.append(
                f'<h{level} id="{html.escape(anchor)}">{html.escape(block.text)}</h{level}>'
            )
        elif isinstance(block, Paragraph):
            css = ' class="note"' if block.note else ""
            parts.append(f"<p{css}>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            caption = html.escape(block.caption)
            parts.append(
                f'<figure><img src="{html.escape(_url(block.path))}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif isinstance(block, Gallery):
            cells = "".join(
                f'<figure><img src="{html.escape(_url(image.path))}"'
                f' alt="{html.escape(image.caption)}">'
                f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
                for image in block.images
            )
            parts.append(
                f'<div class="gallery">{cells}</div>'
                f'<p class="caption">{html.escape(block.caption)}</p>'
            )
        elif isinstance(block, Animation):
            caption = html.escape(block.caption)
            inner = ""
            if block.gif:
                inner += f'<img src="{html.escape(_url(block.gif))}" alt="{caption}">'
            if block.mp4:
                source = html.escape(_url(block.mp4))
                inner += (
                    f'<video controls preload="none" src="{source}"></video>'
                    f'<p><a href="{source}">Download the MP4</a></p>'
                )
            parts.append(f"<figure>{inner}<figcaption>{caption}</figcaption></figure>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No script may run in a report, whatever a run's name or config holds.
        '<meta http-equiv="Content-Security-Policy" content="script-src \'none\';'
        " object-src 'none'; base-uri 'none'; form-action 'none'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


PAGE_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1d1f;
       background: #fff; margin: 0; line-height: 1.5; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { margin-top: 1.6rem; }
p.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 0.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
thead th { background: #f3f3f5; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; }
figure img, figure video { max-width: 100%; height: auto; display: block; }
figcaption, p.caption { color: #555; font-size: 0.9rem; }
div.gallery { display: flex; gap: 0.6rem; align-items: flex-start; }
div.gallery figure { flex: 1 1 0; min-width: 0; margin: 0; text-align: center; }
"""


# Inline syntax anywhere (emphasis, code, links, tables, strikethrough) and block syntax at the
# start of a line (headings, lists, quotes); `<`, `>` and `&` become entities first.
_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]|~])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*\d*)([#+\-=>]|(?<=\d)[.)])")


def markdown_escape(text: str) -> str:
    """Literal text in Markdown: HTML is neutralised, emphasis/link/table syntax backslashed."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", " ")
    return _MARKDOWN_LINE_START.sub(r"\1\\\2", escaped, count=1)


def render_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * min(max(block.level, 1), 4) + " " + markdown_escape(block.text))
        elif isinstance(block, Paragraph):
            text = markdown_escape(block.text)
            parts.append(f"> **Note:** {text}" if block.note else text)
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(markdown_escape(c) for c in block.columns) + " |",
                "|" + "---|" * len(block.columns),
            ]
            lines += [
                "| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in block.rows
            ]
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{markdown_escape(block.caption)}]({_url(block.path)})")
        elif isinstance(block, Gallery):
            images = [
                f"![{markdown_escape(image.caption)}]({_url(image.path)})" for image in block.images
            ]
            parts.append(" ".join(images) + "\n\n" + markdown_escape(block.caption))
        elif isinstance(block, Animation):
            lines = []
            if block.gif:
                lines.append(f"![{markdown_escape(block.caption)}]({_url(block.gif)})")
            if block.mp4:
                lines.append(f"[MP4 video]({_url(block.mp4)})")
            parts.append("\n\n".join(lines))
    return "\n\n".join(parts) + "\n"


# --- the runs ----------------------------------------------------------------------------------


@dataclass
class RunData:
    """Everything the report needs from one run, read once while its store is open."""

    label: str
    run_dir: Path
    dataset: str
    config: dict[str, Any]
    attrs: dict[str, Any]
    class_names: list[str]
    feat_dim: int
    split_sizes: dict[str, int]
    epochs: np.ndarray
    history: dict[str, np.ndarray]
    training: bool
    has_centers: bool
    result: PeakDecline
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics_problem: str | None = None  # why metrics are missing, when they are

    @property
    def at_peak(self) -> dict[str, float]:
        return metrics_at(self.metrics, self.result.peak_epoch)

    @property
    def at_last(self) -> dict[str, float]:
        return metrics_at(self.metrics, self.result.final_epoch)

    @property
    def numbers(self) -> RunNumbers:
        return RunNumbers(self.label, self.result, self.at_peak, self.at_last)


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    names = [path.resolve().name for path in run_dirs]
    labels = []
    for path, name in zip(run_dirs, names, strict=True):
        duplicate = names.count(name) > 1
        labels.append(f"{path.resolve().parent.name}/{name}" if duplicate else name)
    for index, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[index] = f"{label} #{index + 1}"
    return labels


def read_run(
    run_dir: Path, label: str, options: ReportOptions, reporter: Reporter | None = None
) -> RunData:
    if not store_path(run_dir).is_file():
        raise CLAnalyzeError(
            f"no run store in {run_dir} (no {store_path(run_dir).name}):"
            " pass a run folder written by `cl-analyze train`"
        )
    with RunStore(run_dir) as store:
        epochs = store.epochs
        history = store.history
        if store.rows == 0 or "test_accuracy" not in history:
            raise CLAnalyzeError(
                f"{run_dir} has no completed epoch yet: report it once epoch 0 is written"
            )
        result = peak_and_decline(
            epochs, history["test_accuracy"], last_k=options.last_k, threshold=options.threshold
        )
        data = RunData(
            label=label,
            run_dir=run_dir,
            dataset=store.dataset,
            config=dict(store.config),
            attrs=dict(store.attrs),
            class_names=list(store.class_names),
            feat_dim=store.feat_dim,
            split_sizes={split: len(store.labels(split)) for split in store.splits},
            epochs=epochs,
            history=history,
            training=writer_alive(store.run_dir),
            has_centers=store.has_centers,
            result=result,
        )
    data.metrics, data.metrics_problem = _load_metrics(run_dir, reporter)
    return data


def _load_metrics(
    run_dir: Path, reporter: Reporter | None = None
) -> tuple[pd.DataFrame, str | None]:
    """The tidy metrics of a run and, when they are unavailable, why (the report goes on)."""
    empty = pd.DataFrame(columns=["epoch", "split", "metric", "class", "value"])
    from cl_analyze.analysis import load_metrics

    try:
        frame = load_metrics(run_dir, reporter=reporter)
    except CLAnalyzeError as error:
        return empty, str(error)
    return frame.reset_index(drop=True), None


def check_datasets(runs: Sequence[RunData], allow_mixed: bool) -> None:
    datasets = {run.dataset for run in runs}
    if len(datasets) > 1 and not allow_mixed:
        listed = ", ".join(f"{run.label}: {run.dataset}" for run in runs)
        raise CLAnalyzeError(
            f"runs on different datasets ({listed}): report them separately, or pass --allow-mixed"
        )


# --- building ----------------------------------------------------------------------------------


@dataclass
class ReportBuild:
    """A report being written into a temporary folder."""

    folder: Path
    options: ReportOptions
    runs: list[RunData]
    blocks: list[Block] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # sections left out, with why
    reporter: Reporter | None = None

    def figure_path(self, name: str) -> tuple[Path, str]:
        relative = f"{FIGURES}/{name}"
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, relative


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
        read_run(run, label, options, reporter) for run, label in zip(run_dirs, labels, strict=True)
    ]
    check_datasets(runs, options.allow_mixed)
    if options.epochs is not None:
        _check_epochs(runs, options.epochs)
    with _building(out) as folder:
        build = ReportBuild(folder, options, runs, reporter=reporter)
        if sweep is None:
            _with_plot_defaults(lambda: _assemble(build))
        else:
            from cl_analyze.sweep_report import assemble_sweep

            _with_plot_defaults(lambda: assemble_sweep(build, sweep.info, sweep.notes))
        if build.omitted:
            build.blocks.append(Heading(2, "Left out"))
            build.blocks.extend(Paragraph(reason) for reason in build.omitted)
        title = "cl-analyze report: " + ", ".join(run.label for run in runs)
        (folder / "index.html").write_text(render_html(title, build.blocks), encoding="utf-8")
        (folder / "report.md").write_text(render_markdown(build.blocks), encoding="utf-8")
        summary = summary_dict(runs, options, build.omitted)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        metrics_frame(runs).to_csv(folder / "metrics.csv", index=False)
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
    from cl_analyze.sweep_report import sweep_run_dirs

    if len(run_dirs) > 1:
        raise CLAnalyzeError(
            f"{sweeps[0]} is a sweep: report a sweep on its own (one folder), not with other runs"
        )
    info, folders, notes = sweep_run_dirs(run_dirs[0])
    return _Sweep(info, folders, notes)


def _with_plot_defaults(action: Callable[[], None]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # never open a window, even on a desktop
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
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
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


def _assemble(build: ReportBuild) -> None:
    runs = build.runs
    blocks = build.blocks
    blocks.append(Heading(1, "Report: " + " vs ".join(run.label for run in runs)))
    for run in runs:
        if run.training:
            blocks.append(
                Paragraph(
                    f"{run.label} is still training: reported up to its last completed epoch,"
                    f" {run.result.final_epoch}. Rebuild the report when it finishes.",
                    note=True,
                )
            )
    if len({run.dataset for run in runs}) > 1:
        blocks.append(
            Paragraph("These runs use different datasets: compare them with care.", note=True)
        )
    _findings_section(build)
    _setup_section(build)
    if build.options.figures:
        _accuracy_section(build)
        _figure_sections(build)
    else:
        build.omitted.append("Figures and animation: skipped (--no-figures).")
    _metrics_section(build)


def _findings_section(build: ReportBuild) -> None:
    blocks = build.blocks
    blocks.append(Heading(2, "Findings"))
    for run in build.runs:
        if len(build.runs) > 1:
            blocks.append(Heading(3, run.label))
        blocks.append(Paragraph(" ".join(run_findings(run.result, run.at_peak, run.at_last))))
    comparison = compare_runs([run.numbers for run in build.runs])
    if comparison:
        blocks.append(Heading(3, "Comparison"))
        blocks.extend(Paragraph(sentence) for sentence in comparison)
    blocks.append(
        Paragraph(
            f"Definitions: the peak is the epoch of maximum test accuracy (earliest of ties); the"
            f" decline is the peak minus the mean of the last {build.options.last_k} epochs after"
            " it; the noise is the standard deviation of the epoch-to-epoch accuracy changes from"
            " the peak on, and a decline of at least 2x that noise is called real."
        )
    )
    blocks.append(summary_table(build.runs))


def summary_table(runs: Sequence[RunData]) -> Table:
    rows = []
    for run in runs:
        result = run.result
        ratio = "" if result.noise_ratio is None else f"{result.noise_ratio:.1f}x"
        rows.append(
            (
                run.label,
                run.dataset,
                str(run.config.get("loss", "")),
                str(result.peak_epoch),
                percent(result.peak_accuracy),
                f"{result.final_epoch}",
                percent(result.final_accuracy),
                f"{100 * result.decline:.2f}",
                ratio,
                result.verdict,
                "never"
                if result.epoch_reaching_threshold is None
                else str(result.epoch_reaching_threshold),
            )
        )
    threshold = f"{100 * runs[0].result.threshold:g}%"
    columns = (
        "run",
        "dataset",
        "loss",
        "peak epoch",
        "peak accuracy",
        "last epoch",
        "last accuracy",
        "decline (points)",
        "decline / noise",
        "verdict",
        f"epoch reaching {threshold}",
    )
    return Table(columns, tuple(rows))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _setup_section(build: ReportBuild) -> None:
    runs = build.runs
    blocks = build.blocks
    blocks.append(Heading(2, "Setup"))
    columns = ("", *(run.label for run in runs))

    def row(name: str, value: Callable[[RunData], Any]) -> tuple[str, ...]:
        return (name, *(_format_value(value(run)) for run in runs))

    def wall_time(run: RunData) -> str:
        elapsed = run.history.get("elapsed_s")
        if elapsed is None or not np.isfinite(elapsed).any():
            return "-"
        seconds = float(np.nanmax(elapsed))
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"

    setup_rows = [
        row("dataset", lambda run: run.dataset),
        row("classes", lambda run: ", ".join(run.class_names)),
        row("feature dimension", lambda run: run.feat_dim),
        row("samples", lambda run: ", ".join(f"{k} {v}" for k, v in run.split_sizes.items())),
        row("epochs recorded", lambda run: f"{int(run.epochs.min())}..{int(run.epochs.max())}"),
        row("status", lambda run: "still training" if run.training else "finished"),
        row("wall time", wall_time),
        row("device", lambda run: run.attrs.get("device")),
        row("hardware", lambda run: run.attrs.get("hardware")),
        row("cl-analyze version", lambda run: run.attrs.get("package_version")),
        row("torch version", lambda run: run.attrs.get("torch_version")),
        row("created", lambda run: run.attrs.get("created")),
        row("folder", lambda run: str(run.run_dir)),
    ]
    blocks.append(Table(columns, tuple(setup_rows)))
    keys = sorted({key for run in runs for key in run.config})
    ordered = [k for k in LEADING_CONFIG_KEYS if k in keys] + [
        k for k in keys if k not in LEADING_CONFIG_KEYS
    ]
    blocks.append(Heading(3, "Configuration"))
    config_rows = []
    for key in ordered:
        values = [_format_value(run.config.get(key)) for run in runs]
        differs = len(runs) > 1 and len(set(values)) > 1
        config_rows.append((key + (" (differs)" if differs else ""), *values))
    blocks.append(Table(columns, tuple(config_rows)))


def _accuracy_section(build: ReportBuild) -> None:
    from cl_analyze.figures import figure_style, run_colors

    runs = build.runs
    style = figure_style(build.options.style)
    colors = run_colors(len(runs))
    with style.context():
        figure = peak_decline_figure(runs, colors, style.width, build.options.threshold)
        path, relative = build.figure_path("accuracy.png")
        figure.savefig(path, dpi=style.png_dpi)
        _close(figure)
    build.blocks.append(Heading(2, "Accuracy"))
    build.blocks.append(
        Image(
            relative,
            "Test accuracy per epoch (left: all; right: zoom on the top). Star: the peak;"
            " shaded: the last epochs averaged for the decline, with their mean as a bar.",
        )
    )


def peak_decline_figure(
    runs: Sequence[RunData], colors: np.ndarray, width: float, threshold: float
) -> Figure:
    """Test accuracy curves with each run's peak starred and its decline window shaded."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, width * 0.42), layout="constrained")
    full, zoom = figure.subplots(1, 2)
    lowest_top = 1.0
    highest = 0.0
    zoom_start = math.inf
    few = len(runs) <= 3  # beyond that, shading and labels per run hide the curves
    for run, color in zip(runs, colors, strict=True):
        result = run.result
        accuracy = 100 * run.history["test_accuracy"]
        for axes in (full, zoom):
            axes.plot(run.epochs, accuracy, color=color, label=run.label, marker=".")
            axes.plot(
                result.peak_epoch,
                100 * result.peak_accuracy,
                marker="*",
                markersize=12,
                color=color,
                markeredgecolor="black",
                linestyle="none",
            )
            if result.last_k:
                tail_epochs = run.epochs[-result.last_k :]
                if few:
                    axes.axvspan(tail_epochs[0], tail_epochs[-1], color=color, alpha=0.12)
                axes.hlines(
                    100 * result.tail_mean,
                    tail_epochs[0],
                    tail_epochs[-1],
                    color=color,
                    linewidth=2.5,
                )
        if few:
            zoom.annotate(
                f"{100 * result.peak_accuracy:.2f}% @ {result.peak_epoch}"
                + (f", -{100 * result.decline:.2f} pt" if result.decline > 0 else ""),
                (result.peak_epoch, 100 * result.peak_accuracy),
                textcoords="offset points",
                xytext=(4, 6),
                color=color,
                fontsize="small",
            )
        tail = accuracy[run.epochs >= result.peak_epoch]
        lowest_top = min(lowest_top, float(np.nanmin(tail)) / 100)
        highest = max(highest, result.peak_accuracy)
        near = np.flatnonzero(accuracy >= 100 * result.peak_accuracy - 3)
        zoom_start = min(zoom_start, float(run.epochs[near[0]]))
    span = max(100 * (highest - lowest_top), 0.2)
    zoom.set_ylim(100 * lowest_top - 0.6 * span, 100 * highest + 0.5 * span)
    last = max(float(run.epochs.max()) for run in runs)
    zoom.set_xlim(zoom_start - 0.5, last + 0.5)
    full.axhline(100 * threshold, color="grey", linestyle=":", linewidth=1)
    full.set_ylim(0, 100)
    full.set_title("test accuracy")
    zoom.set_title("near the peak")
    for axes in (full, zoom):
        axes.set_xlabel("epoch")
        axes.set_ylabel("accuracy (%)")
        axes.grid(alpha=0.3)
    figure.legend(
        *full.get_legend_handles_labels(), loc="outside lower center", ncol=min(len(runs), 3)
    )
    return figure


def _close(figure: Figure) -> None:
    figure.clf()


def _figure_sections(build: ReportBuild) -> None:
    """Scatter grid, animation, metric curves and centers, drawn by cl_analyze.plots/animate."""
    from cl_analyze import plots
    from cl_analyze.figures import figure_style, save_figure

    options = build.options
    style = figure_style(options.style)
    loaded = [
        plots.load_plot_run(
            run.run_dir,
            max_points=options.max_points,
            metrics=None if run.metrics.empty else run.metrics,
            name=run.label,
        )
        for run in build.runs
    ]
    splits = [s for s in ("train", "test") if any(s in run.points for run in loaded)]

    def save(figure: Figure, name: str) -> str:
        path, relative = build.figure_path(name)
        save_figure(figure, path.with_suffix(""), style, formats=("png",))
        _close(figure)
        return relative

    blocks = build.blocks
    blocks.append(Heading(2, "Features"))
    shown = ["test"] if "test" in splits else splits[:1]
    stages = scatter_stages(build.runs, options.epochs)
    images = []
    for index, (caption, rows) in enumerate(stages):
        figure = plots.scatter_figure(loaded, rows, splits=shown, style=style)
        images.append(Image(save(figure, f"scatter_{index}.png"), caption))
    blocks.append(
        Gallery(
            tuple(images),
            f"{shown[0].capitalize()} features (a run per row; up to {options.max_points} points"
            " per panel); each run at its own such epoch. Crosses: the learned centers.",
        )
    )
    if options.animation:
        _animation_section(build, loaded, splits, style)
    metric_figure = plots.metric_figure(loaded, style)
    if metric_figure is None:
        build.omitted.append("Metric curves: no run has metrics.")
    else:
        blocks.append(Heading(2, "Metric curves"))
        blocks.append(
            Image(
                save(metric_figure, "metrics.png"),
                "Geometry metrics per epoch (test solid, train dashed).",
            )
        )
    blocks.append(Heading(2, "Centers"))
    blocks.append(Paragraph(centers_sentence(build.runs)))
    for index, (run, plot_run) in enumerate(zip(build.runs, loaded, strict=True)):
        images = []
        if plot_run.centers is not None:
            relative = save(plots.centers_figure(plot_run, style), f"centers_{index}.png")
            images.append(Image(relative, "paths of the learned centers (o start, X end)"))
        heatmap = plots.distance_heatmap_figure(
            plot_run.distances, plot_run.class_names, style, title=run.label
        )
        images.append(Image(save(heatmap, f"distances_{index}.png"), "class-mean distances"))
        blocks.append(
            Gallery(
                tuple(images),
                f"{run.label}: distances between the class means of the test features at the"
                " peak and at the last epoch"
                + ("; the learned centers' paths." if plot_run.centers is not None else "."),
            )
        )


def centers_sentence(runs: Sequence[RunData]) -> str:
    """What the learned centers did between each run's peak and last epoch, from the metrics."""
    parts = []
    for run in runs:
        if not run.has_centers:
            parts.append(f"{run.label} learns no centers (softmax only)")
            continue
        at_peak, at_last = run.at_peak, run.at_last
        changes = [
            describe_change(METRIC_WORDS[name], at_peak[name], at_last[name])
            for name in ("center_norm", "center_min_distance")
            if name in at_peak and name in at_last
        ]
        detail = " and ".join(changes) if changes else "no center metrics recorded"
        parts.append(
            f"{run.label}, from epoch {run.result.peak_epoch} to {run.result.final_epoch}: {detail}"
        )
    return "; ".join(parts) + "."


def _animation_section(
    build: ReportBuild, loaded: Sequence[PlotRun], splits: Sequence[str], style: FigureStyle
) -> None:
    from cl_analyze.animate import write_animation

    stem, _ = build.figure_path("animation")
    if build.reporter is not None:
        # Not passed on: write_animation would name the temporary folder in its log lines.
        frames = len({int(e) for run in loaded for e in run.epochs})
        build.reporter.log(f"drawing the animation ({frames} frames)")
    written = write_animation(loaded, stem, splits=splits, style=style, formats=("gif", "mp4"))
    names = {path.suffix: f"{FIGURES}/{path.name}" for path in written}
    build.blocks.append(Heading(2, "Animation"))
    build.blocks.append(
        Animation(
            names.get(".gif"),
            names.get(".mp4"),
            "Features epoch by epoch, runs side by side (a run that ended earlier holds its"
            " last epoch).",
        )
    )


def scatter_stages(
    runs: Sequence[RunData], epochs: Sequence[int | str] | None
) -> list[tuple[str, list[int]]]:
    """(caption, row of each run) for each scatter figure.

    Default: the start, the first epoch reaching the threshold (a run that never does: its peak),
    the peak and the last epoch, each run at its own such epoch; a stage whose rows repeat the
    previous one is merged into it.
    """
    if epochs is not None:
        return [(_spec_words(spec), [_row_of(run, spec) for run in runs]) for spec in epochs]
    threshold = f"{100 * runs[0].result.threshold:g}%"
    candidates: list[tuple[str, list[int]]] = [("start", [0 for _ in runs])]
    if any(run.result.epoch_reaching_threshold is not None for run in runs):
        rows = [
            _row_of(
                run,
                run.result.peak_epoch
                if run.result.epoch_reaching_threshold is None
                else run.result.epoch_reaching_threshold,
            )
            for run in runs
        ]
        candidates.append((f"first at {threshold}", rows))
    candidates.append(("peak", [_row_of(run, "peak") for run in runs]))
    candidates.append(("last", [len(run.epochs) - 1 for run in runs]))
    stages: list[tuple[str, list[int]]] = []
    for caption, rows in candidates:
        if stages and stages[-1][1] == rows:
            stages[-1] = (f"{stages[-1][0]} = {caption}", rows)
            continue
        stages.append((caption, rows))
    return stages


def _row_of(run: RunData, spec: int | str) -> int:
    if spec == "first":
        return 0
    if spec == "last":
        return len(run.epochs) - 1
    epoch = run.result.peak_epoch if spec == "peak" else int(spec)
    return int(np.flatnonzero(run.epochs == epoch)[0])


def _spec_words(spec: int | str) -> str:
    if isinstance(spec, int):
        return f"epoch {spec}"
    return {"first": "start", "peak": "peak", "last": "last"}[spec]


def _metrics_section(build: ReportBuild) -> None:
    blocks = build.blocks
    for run in build.runs:
        if run.metrics_problem is not None:
            build.omitted.append(f"Metrics of {run.label}: {run.metrics_problem}.")
    with_metrics = [run for run in build.runs if not run.metrics.empty]
    if not with_metrics:
        return
    blocks.append(Heading(2, "Metrics at the peak and at the last epoch"))
    for run in with_metrics:
        blocks.append(Heading(3, run.label))
        blocks.append(metrics_table(run))


def metrics_table(run: RunData) -> Table:
    """Whole-split metrics of the test (and train) split at the peak and the last epoch."""
    result = run.result
    rows = []
    for split in ("test", "train"):
        at_peak = metrics_at(run.metrics, result.peak_epoch, split)
        at_last = metrics_at(run.metrics, result.final_epoch, split)
        names = [n for n in METRIC_WORDS if n in at_peak] + sorted(
            n for n in at_peak if n not in METRIC_WORDS
        )
        for name in names:
            before, after = at_peak[name], at_last.get(name, math.nan)
            change = (
                f"{(after - before) / abs(before):+.1%}"
                if before and math.isfinite(before) and math.isfinite(after)
                else ""
            )
            rows.append((split, name, f"{before:.4g}", f"{after:.4g}", change))
    columns = (
        "split",
        "metric",
        f"peak (epoch {result.peak_epoch})",
        f"last (epoch {result.final_epoch})",
        "change",
    )
    return Table(columns, tuple(rows))


# --- machine-readable outputs ------------------------------------------------------------------


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summary_dict(
    runs: Sequence[RunData], options: ReportOptions, omitted: Sequence[str]
) -> dict[str, Any]:
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
            }
        )
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "last_k": options.last_k,
        "threshold": options.threshold,
        "omitted": list(omitted),
        "runs": entries,
    }


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

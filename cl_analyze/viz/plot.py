"""`cl-analyze plot`: every figure (PNG + PDF) and the animation of one or more runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from cl_analyze.atomic import write_text_atomic
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.metrics.decline_dynamics import decline_dynamics
from cl_analyze.progress import Reporter
from cl_analyze.store import SPLITS, RunStore, writer_alive
from cl_analyze.viz.animate import ANIMATION_FORMATS, write_animation
from cl_analyze.viz.centers import centers_figure, distance_heatmap_figure
from cl_analyze.viz.curves import accuracy_figure, loss_figure, metric_figure
from cl_analyze.viz.flips import (
    class_accuracy_figure,
    flip_scatter_figure,
    margin_histogram_figure,
)
from cl_analyze.viz.regions import load_regions
from cl_analyze.viz.runs import EpochSpec, PlotRun, load_plot_run
from cl_analyze.viz.scatter import scatter_figure, union_splits
from cl_analyze.viz.style import (
    FIGURE_FORMATS,
    FigureStyle,
    figure_style,
    paper_style,
    save_figure,
)

if TYPE_CHECKING:
    import pandas as pd


EPOCH_KEYWORDS = ("first", "peak", "last")


# Written last into a plot folder: marks it as ours, so a later `plot` may write into it again.
PLOT_MANIFEST = "plots.json"


PLOT_FORMAT = "cl-analyze-plots"


SPLIT_CHOICES = ("train", "test", "both")


@dataclass(frozen=True)
class PlotOptions:
    """What ``plot_runs`` draws and where; the defaults are those of ``cl-analyze plot``."""

    out: Path | None = None  # default: reports/<first run>/figures
    epochs: tuple[EpochSpec, ...] | None = None  # static scatters; default: first, peak, last
    split: str = "both"
    max_points: int | None = 10_000  # per split and run; None keeps every point
    dims: tuple[int, int] | None = None  # two raw feature dimensions instead of PCA
    projection: str = "pca"  # D > 2: pca, umap or tsne (viz.projections)
    style: str = "paper"
    figure_formats: tuple[str, ...] = FIGURE_FORMATS  # png (web) and pdf (vector, for papers)
    animation: bool = True
    animation_formats: tuple[str, ...] = ANIMATION_FORMATS
    fps: float = 8.0
    allow_mixed: bool = False
    metrics: bool = True
    seed: int = 0
    regions: bool = False  # shade the classifier's decision regions under the scatters
    figure_width: float | None = None  # inches; None: the style's (paper: one 3.4 in column)
    font: str = "sans"
    usetex: bool = False
    strip: bool = True  # the accuracy strip under the animation's scatters
    strip_metric: str | None = None  # a second curve in the strip, e.g. silhouette
    hold_peak: float = 0.0  # seconds a run's peak frame is held longer

    def __post_init__(self) -> None:
        # Checked up front: failing after minutes of metrics and figures would waste them.
        if self.max_points is not None and self.max_points < 1:
            raise CLAnalyzeError(f"--max-points must be >= 1, got {self.max_points}")
        if not self.fps > 0:
            raise CLAnalyzeError(f"--fps must be > 0, got {self.fps}")
        if not self.hold_peak >= 0:
            raise CLAnalyzeError(f"--hold-peak must be >= 0 seconds, got {self.hold_peak}")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise CLAnalyzeError(f"--out {self.out} is a file: pass a folder for the figures")


@dataclass(frozen=True)
class PlotResult:
    out_dir: Path
    files: tuple[Path, ...]


def parse_epochs(text: str | None) -> tuple[EpochSpec, ...] | None:
    """``"0,12,32,last"`` -> ``(0, 12, 32, "last")``; keywords: first, peak, last."""
    if text is None or not text.strip():
        return None
    specs: list[EpochSpec] = []
    for part in (p.strip() for p in text.split(",")):
        if part in EPOCH_KEYWORDS:
            specs.append(part)
        elif part.isdigit():
            specs.append(int(part))
        else:
            raise CLAnalyzeError(
                f"--epochs: {part!r} is not an epoch: give numbers or {', '.join(EPOCH_KEYWORDS)}"
                " separated by commas, e.g. 0,12,last"
            )
    return tuple(specs)


def parse_dims(text: str | None) -> tuple[int, int] | None:
    """``"0,1"`` -> ``(0, 1)``: the two raw feature dimensions to draw."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise CLAnalyzeError(f"--dims {text!r}: give two dimension numbers, e.g. --dims 0,1")
    first, second = (int(p) for p in parts)
    if first == second:
        raise CLAnalyzeError(f"--dims {text!r} names one dimension twice: pick two different ones")
    return first, second


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in ANIMATION_FORMATS]
    if unknown or not formats:
        raise CLAnalyzeError(
            f"--formats {text!r}: animation formats are {', '.join(ANIMATION_FORMATS)}"
        )
    return formats


def split_names(choice: str) -> tuple[str, ...]:
    if choice not in SPLIT_CHOICES:
        raise CLAnalyzeError(f"--split {choice!r}: use one of {', '.join(SPLIT_CHOICES)}")
    return SPLITS if choice == "both" else (choice,)


def run_names(runs: Sequence[Path]) -> list[str]:
    """Folder names, with the parent added when two runs share one."""
    names = [Path(run).resolve().name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(run).resolve().parent.name}/{Path(run).resolve().name}" for run in runs]


def _load_metrics(run: Path, reporter: Reporter) -> pd.DataFrame | None:
    from cl_analyze.metrics.cache import load_metrics

    try:
        return load_metrics(run, reporter=reporter)
    except CLAnalyzeError as error:
        reporter.log(f"metrics unavailable for {run}: {error}")
        return None


def check_same_dataset(runs: Sequence[PlotRun], allow_mixed: bool) -> None:
    datasets = {run.dataset for run in runs}
    if len(datasets) > 1 and not allow_mixed:
        listing = ", ".join(f"{run.name}: {run.dataset}" for run in runs)
        raise CLAnalyzeError(
            f"runs use different datasets ({listing}): compare runs of one dataset"
            " or pass --allow-mixed"
        )


def epoch_label(spec: EpochSpec) -> str:
    return spec if isinstance(spec, str) else f"epoch{spec:03d}"


def check_epochs(runs: Sequence[PlotRun], specs: Sequence[EpochSpec]) -> None:
    """A numbered epoch must be a completed epoch of at least one run."""
    for spec in specs:
        if isinstance(spec, int) and not any(spec in run.epochs for run in runs):
            known = ", ".join(f"{run.name}: {run.epochs.min()}..{run.epochs.max()}" for run in runs)
            raise CLAnalyzeError(
                f"epoch {spec} is in no run ({known}): pick a completed epoch, first, peak or last"
            )


def plot_runs(
    runs: Sequence[Path], options: PlotOptions, reporter: Reporter | None = None
) -> PlotResult:
    """Write every figure (PNG + PDF) and the animation for ``runs`` into one folder."""
    reporter = reporter or Reporter(quiet=True)
    if not runs:
        raise CLAnalyzeError("no run given: pass one or more run folders, e.g. artifacts/run1")
    style = paper_style(
        figure_style(options.style), options.figure_width, font=options.font, usetex=options.usetex
    )
    splits = split_names(options.split)
    for run in runs:
        if not Path(run).exists():
            raise CLAnalyzeError(f"run {run} does not exist: pass a folder written by train/embed")
    names = run_names(runs)
    loaded = [
        load_plot_run(
            Path(run),
            splits=splits,
            max_points=options.max_points,
            dims=options.dims,
            seed=options.seed,
            name=name,
            projection_name=options.projection,
        )
        for run, name in zip(runs, names, strict=True)
    ]
    check_same_dataset(loaded, options.allow_mixed)
    specs = options.epochs or ("first", "peak", "last")
    check_epochs(loaded, specs)
    for path, plot_run in zip(runs, loaded, strict=True):
        if writer_alive(Path(path)):
            reporter.log(f"{plot_run.name} is still training: plotting its completed epochs")
    if options.metrics:  # after the checks: computing metrics can take a while
        loaded = [
            replace(plot_run, metrics=_load_metrics(Path(path), reporter))
            for path, plot_run in zip(runs, loaded, strict=True)
        ]
    if options.animation and options.strip:
        from cl_analyze.viz.strip import check_strip_metric

        check_strip_metric(loaded, options.strip_metric)
    out_dir = options.out or Path("reports") / f"{names[0].replace('/', '_')}-plots"
    check_plot_folder(out_dir)
    files: list[Path] = []

    def save(figure: Figure | None, stem: str) -> None:
        if figure is not None:
            files.extend(save_figure(figure, out_dir / stem, style, options.figure_formats))
            reporter.log(f"wrote {out_dir / stem}.{'/.'.join(options.figure_formats)}")

    shown_splits = union_splits(loaded)
    regions = (
        [load_regions(Path(run), rows=len(p.epochs)) for run, p in zip(runs, loaded, strict=True)]
        if options.regions
        else None
    )
    if regions is not None and not any(regions):
        reporter.log("--regions: no run stores a classifier with 2-D features; drawn without")
    for spec in dict.fromkeys(specs):
        rows = [run.resolve(spec) for run in loaded]
        save(
            scatter_figure(loaded, rows, splits=shown_splits, style=style, regions=regions),
            f"scatter_{epoch_label(spec)}",
        )
    save(accuracy_figure(loaded, style), "accuracy")
    save(loss_figure(loaded, style), "loss")
    save(metric_figure(loaded, style), "metrics")
    _save_decline_figures(runs, loaded, save, style, options.max_points)
    for plot_run in loaded:
        slug = plot_run.name.replace("/", "_")
        if plot_run.centers is not None:
            save(centers_figure(plot_run, style), f"centers_{slug}")
        heatmap = distance_heatmap_figure(
            plot_run.distances,
            plot_run.class_names,
            style,
            title=f"{plot_run.name}: distances between class means",
        )
        save(heatmap, f"distances_{slug}")
    if options.animation:
        files.extend(
            write_animation(
                loaded,
                out_dir / "animation",
                splits=shown_splits,
                style=style,
                formats=options.animation_formats,
                fps=options.fps,
                reporter=reporter,
                regions=regions,
                strip=options.strip,
                strip_metric=options.strip_metric,
                hold_peak=options.hold_peak,
            )
        )
    write_text_atomic(
        out_dir / PLOT_MANIFEST,
        json.dumps({"format": PLOT_FORMAT, "files": sorted(path.name for path in files)}, indent=2)
        + "\n",
    )
    return PlotResult(out_dir=out_dir, files=tuple(files))


def _save_decline_figures(
    runs: Sequence[Path | str],
    loaded: Sequence[PlotRun],
    save: Callable[[Figure | None, str], None],
    style: FigureStyle,
    max_points: int | None,
) -> None:
    """Per-class accuracy, margins at the peak and the end, the flipped samples (test split)."""
    explained = []
    for path, plot_run in zip(runs, loaded, strict=True):
        with RunStore(path, rows=len(plot_run.epochs)) as store:
            if not store.has_features("test"):
                continue
        peak = int(plot_run.epochs[plot_run.peak_row])  # the peak the other figures show
        rows = len(plot_run.epochs)
        explained.append(decline_dynamics(path, peak, rows=rows, label=plot_run.name))
    if not explained:
        return
    save(class_accuracy_figure(explained, style), "class_accuracy")
    for d in explained:
        slug = d.run.replace("/", "_")
        if d.margin_samples:
            save(margin_histogram_figure(d, style), f"margins_{slug}")
        if d.epoch_a != d.epoch_b:
            save(flip_scatter_figure(d, style, max_points=max_points), f"flips_{slug}")


def check_plot_folder(out: Path) -> None:
    """Write only into a new or empty folder, or one an earlier `plot` wrote (its manifest
    says so): figures are never written over files the user put there."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CLAnalyzeError(f"--out {out} is a file: pass a folder for the figures")
    if not any(out.iterdir()):
        return
    try:
        manifest = json.loads((out / PLOT_MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != PLOT_FORMAT:
        raise CLAnalyzeError(
            f"--out {out} holds files that `cl-analyze plot` did not write: pick a new or empty"
            " folder"
        )

"""The commands that draw and write up: ``plot`` and ``report`` (registered by ``cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

import typer

from cl_analyze.cli_help import choice_parser

# viz.plot's SPLIT_CHOICES and viz.style's STYLES, written out: importing viz for two names would
# double the start-up of every command (matplotlib, seaborn); tests keep them equal.
PLOT_SPLITS = ("train", "test", "both")
PLOT_STYLES = ("paper", "slides")
PROJECTIONS = ("pca", "umap", "tsne")  # viz.projections.PROJECTIONS
# "\\[": Rich reads a bare [umap] as markup and drops it from --help.
PROJECTION_HELP = "2-D map of features with D > 2 (umap, tsne: pip install 'cl-analyze\\[umap]')"
FONTS = ("sans", "serif")

if TYPE_CHECKING:  # see cli_options: Typer lists and completes a Literal's values
    PlotSplit: TypeAlias = str
    Style: TypeAlias = str
    Projection: TypeAlias = str
    Font: TypeAlias = str
else:
    PlotSplit = Literal[PLOT_SPLITS]
    Style = Literal[PLOT_STYLES]
    Projection = Literal[PROJECTIONS]
    Font = Literal[FONTS]


# The options plot and report share, defined once.
ProjectionOption = Annotated[
    Projection, typer.Option(parser=choice_parser(PROJECTIONS), help=PROJECTION_HELP)
]
RegionsOption = Annotated[
    bool, typer.Option("--regions", help="shade the classifier's decision regions (2-D)")
]
FontOption = Annotated[Font, typer.Option(parser=choice_parser(FONTS), help="figure font")]
UsetexOption = Annotated[
    bool, typer.Option("--usetex", help="typeset figure text with LaTeX (needs it installed)")
]
StripOption = Annotated[
    bool,
    typer.Option("--strip/--no-strip", help="accuracy strip with a cursor under the animation"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", help="plain log lines, no progress bar")]


# --- plot (cl-analyze plot) ---


def plot(
    runs: Annotated[list[Path], typer.Argument(help="run folders (artifacts/run1 ...)")],
    out: Annotated[
        Path | None,
        typer.Option(
            show_default="reports/<first run>-plots",
            help="a new folder, or one that plot wrote before",
        ),
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(show_default="first,peak,last", help="scatter epochs, e.g. 0,12,32,last"),
    ] = None,
    split: Annotated[
        PlotSplit, typer.Option(parser=choice_parser(PLOT_SPLITS), help="split(s) to draw")
    ] = "both",
    max_points: Annotated[int, typer.Option(help="points per split and run, stratified")] = 10_000,
    dims: Annotated[
        str | None,
        typer.Option(
            show_default="PCA when D > 2", help="two raw feature dimensions to draw, e.g. 0,1"
        ),
    ] = None,
    projection: ProjectionOption = "pca",
    style: Annotated[
        Style,
        typer.Option(
            parser=choice_parser(PLOT_STYLES), help="paper: one 3.4 in column; slides: larger"
        ),
    ] = "paper",
    animation: Annotated[
        bool, typer.Option("--animation/--no-animation", help="write the per-epoch animation")
    ] = True,
    formats: Annotated[str, typer.Option(help="animation formats, comma-separated")] = "gif,mp4",
    fps: Annotated[float, typer.Option(help="animation frames (epochs) per second")] = 8.0,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="load geometry metrics for titles/curves")
    ] = True,
    figure_width: Annotated[
        str | None,
        typer.Option(
            show_default="paper: column; slides: natural",
            help="exact figure width: column (3.4 in), page (7 in) or inches",
        ),
    ] = None,
    font: FontOption = "sans",
    usetex: UsetexOption = False,
    strip: StripOption = True,
    strip_metric: Annotated[
        str | None, typer.Option(help="a second strip curve on its own axis, e.g. silhouette")
    ] = None,
    hold_peak: Annotated[
        float, typer.Option(help="seconds the animation holds each run's peak frame longer")
    ] = 0.0,
    allow_mixed: Annotated[
        bool, typer.Option("--allow-mixed", help="allow runs on different datasets")
    ] = False,
    regions: RegionsOption = False,
    quiet: QuietOption = False,
) -> None:
    """Scatter, curve, center and heatmap figures (PNG + PDF) and a side-by-side animation."""
    from cl_analyze.progress import Reporter
    from cl_analyze.viz.plot import PlotOptions, parse_dims, parse_epochs, parse_formats, plot_runs
    from cl_analyze.viz.style import parse_figure_width

    options = PlotOptions(
        out=out,
        epochs=parse_epochs(epochs),
        split=split,
        max_points=max_points,
        dims=parse_dims(dims),
        projection=projection,
        style=style,
        animation=animation,
        animation_formats=parse_formats(formats),
        fps=fps,
        allow_mixed=allow_mixed,
        metrics=metrics,
        regions=regions,
        figure_width=parse_figure_width(figure_width),
        font=font,
        usetex=usetex,
        strip=strip,
        strip_metric=strip_metric,
        hold_peak=hold_peak,
    )
    with Reporter(quiet=quiet) as reporter:
        result = plot_runs(runs, options, reporter)
    reporter.log(f"{len(result.files)} files in {result.out_dir}")


# --- report (cl-analyze report) ---


def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders (or a sweep folder)")],
    out: Annotated[
        Path | None, typer.Option(show_default="reports/<first run>", help="report folder")
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(
            show_default="0, first at the threshold, peak, last",
            help="scatter epochs, e.g. 0,12,peak,last",
        ),
    ] = None,
    last_k: Annotated[int, typer.Option(help="epochs averaged for the decline")] = 5,
    threshold: Annotated[float, typer.Option(help="accuracy to reach, as 97 or 0.97")] = 97.0,
    allow_mixed: Annotated[
        bool, typer.Option("--allow-mixed", help="allow runs on different datasets side by side")
    ] = False,
    animation: Annotated[
        bool, typer.Option("--animation/--no-animation", help="GIF + MP4 of the runs")
    ] = True,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="draw figures (off: text and data)")
    ] = True,
    max_points: Annotated[int, typer.Option(help="points per scatter panel")] = 2000,
    projection: ProjectionOption = "pca",
    regions: RegionsOption = False,
    figure_width: Annotated[
        str | None,
        typer.Option(
            show_default="slides for the web",
            help="paper figures at an exact width: column (3.4 in), page (7 in) or inches",
        ),
    ] = None,
    font: FontOption = "sans",
    usetex: UsetexOption = False,
    strip: StripOption = True,
    quiet: QuietOption = False,
) -> None:
    """Write a report (index.html, report.md, summary.json, metrics.csv) on one or more runs.

    The last line printed is the path of index.html."""
    from cl_analyze.progress import Reporter
    from cl_analyze.report import ReportOptions, build_report
    from cl_analyze.viz.plot import parse_epochs
    from cl_analyze.viz.style import parse_figure_width

    options = ReportOptions(
        out=out,
        epochs=parse_epochs(epochs),
        last_k=last_k,
        threshold=threshold / 100 if threshold > 1 else threshold,
        allow_mixed=allow_mixed,
        animation=animation,
        figures=figures,
        max_points=max_points,
        projection=projection,
        regions=regions,
        figure_width=parse_figure_width(figure_width),
        font=font,
        usetex=usetex,
        strip=strip,
    )
    with Reporter(quiet=quiet) as reporter:
        index = build_report(runs, options, reporter)
    print(index)

"""The command line: a thin Typer layer that builds a frozen config and calls one core function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

import typer

from cl_analyze.cli_help import Command, Group, choice_parser
from cl_analyze.cli_options import DATA_ENV, DEVICE_ENV, Dataset, parse_device
from cl_analyze.cli_train import sweep, train
from cl_analyze.config import DATASETS
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import SPLITS

# viz.plot's SPLIT_CHOICES and viz.style's STYLES, written out: importing viz for two names would
# double the start-up of every command (matplotlib, seaborn); tests keep them equal.
PLOT_SPLITS = ("train", "test", "both")
PLOT_STYLES = ("paper", "slides")
PROJECTIONS = ("pca", "umap", "tsne")  # viz.projections.PROJECTIONS
PROJECTION_HELP = "2-D map of features with D > 2 (umap, tsne: pip install 'cl-analyze[umap]')"
FONTS = ("sans", "serif")

if TYPE_CHECKING:  # see cli_options: Typer lists and completes a Literal's values
    Split: TypeAlias = str
    PlotSplit: TypeAlias = str
    Style: TypeAlias = str
    Projection: TypeAlias = str
    Font: TypeAlias = str
else:
    Split = Literal[SPLITS]
    PlotSplit = Literal[PLOT_SPLITS]
    Style = Literal[PLOT_STYLES]
    Projection = Literal[PROJECTIONS]
    Font = Literal[FONTS]

app = typer.Typer(
    name="cl-analyze",
    help="Study how a loss shapes learned features: softmax vs center loss on LeNet++.",
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def version_line() -> str:
    """cl-analyze's version with what it runs on: Python, torch, CUDA and the CPU's capability."""
    import platform

    import torch

    from cl_analyze import __version__

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        gpus = f"CUDA {torch.version.cuda}, {count} GPU{'s' if count > 1 else ''}"
        accelerator = f"{gpus} ({torch.cuda.get_device_name(0)})"
    elif torch.version.cuda:
        accelerator = f"CUDA {torch.version.cuda} build, no GPU visible"
    else:
        accelerator = "no CUDA"
    return (
        f"cl-analyze {__version__} (Python {platform.python_version()}, torch {torch.__version__},"
        f" {accelerator}, CPU capability {torch.backends.cpu.get_cpu_capability()})"
    )


def _print_version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the versions of cl-analyze, Python, torch and CUDA, and the CPU's"
            " capability (AVX2, AVX512 ...), then exit",
        ),
    ] = False,
) -> None:
    """Study how a loss shapes learned features: softmax vs center loss on LeNet++."""


# The commands in the order of the help and the README: train, embed, plot, report, sweep.
app.command(cls=Command)(train)

# --- embed (cl-analyze embed) ---


@app.command("embed", cls=Command)
def embed_command(
    run: Annotated[Path, typer.Argument(help="run folder written by `cl-analyze train`")],
    checkpoint: Annotated[str, typer.Option(help="last, best or an epoch number")] = "last",
    dataset: Annotated[
        Dataset | None,
        typer.Option(parser=choice_parser(DATASETS), show_default="the run's", help="dataset"),
    ] = None,
    split: Annotated[Split, typer.Option(parser=choice_parser(SPLITS), help="split")] = "test",
    images: Annotated[
        Path | None,
        typer.Option(help="embed a folder of images in class subfolders instead of a dataset"),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            metavar="<dir>",
            envvar=DATA_ENV,
            show_envvar=True,
            show_default="the run's",
            help="folder holding the dataset files",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            show_default="the run's subset of its own dataset, else all",
            help="embed a stratified subset of N images",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(show_default="RUN/embed-<dataset>-<split>-epochE.h5", help="store to write"),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            parser=parse_device,
            envvar=DEVICE_ENV,
            show_envvar=True,
            help="auto, cpu, cuda or cuda:N",
        ),
    ] = "auto",
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 128,
    all_checkpoints: Annotated[
        bool,
        typer.Option(
            "--all-checkpoints",
            help="rebuild a --no-embed run's per-epoch embeddings in its run.h5",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="plain log lines, no progress bar")
    ] = False,
) -> None:
    """Embed a dataset split or an image folder with a trained checkpoint into a run store."""
    from cl_analyze.progress import Reporter
    from cl_analyze.training.embed import EmbedConfig, embed

    config = EmbedConfig(
        run=run,
        checkpoint=checkpoint,
        dataset=dataset,
        data_dir=data_dir,
        split=split,
        images=images,
        limit=limit,
        out=out,
        device=device,
        batch_size=batch_size,
        all_checkpoints=all_checkpoints,
    )
    path = embed(config, Reporter(quiet=quiet))
    print(path)


# --- plot (cl-analyze plot) ---


@app.command(cls=Command)
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
    projection: Annotated[
        Projection,
        typer.Option(parser=choice_parser(PROJECTIONS), help=PROJECTION_HELP),
    ] = "pca",
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
    font: Annotated[Font, typer.Option(parser=choice_parser(FONTS), help="figure font")] = "sans",
    usetex: Annotated[
        bool, typer.Option("--usetex", help="typeset figure text with LaTeX (needs it installed)")
    ] = False,
    strip: Annotated[
        bool,
        typer.Option("--strip/--no-strip", help="accuracy strip with a cursor under the animation"),
    ] = True,
    strip_metric: Annotated[
        str | None, typer.Option(help="a second strip curve on its own axis, e.g. silhouette")
    ] = None,
    hold_peak: Annotated[
        float, typer.Option(help="seconds the animation holds each run's peak frame longer")
    ] = 0.0,
    allow_mixed: Annotated[
        bool, typer.Option("--allow-mixed", help="allow runs on different datasets")
    ] = False,
    regions: Annotated[
        bool, typer.Option("--regions", help="shade the classifier's decision regions (2-D)")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="plain log lines, no progress bar")
    ] = False,
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


@app.command(cls=Command)
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
    projection: Annotated[
        Projection,
        typer.Option(parser=choice_parser(PROJECTIONS), help=PROJECTION_HELP),
    ] = "pca",
    regions: Annotated[
        bool, typer.Option("--regions", help="shade the classifier's decision regions (2-D)")
    ] = False,
    figure_width: Annotated[
        str | None,
        typer.Option(
            show_default="slides for the web",
            help="paper figures at an exact width: column (3.4 in), page (7 in) or inches",
        ),
    ] = None,
    font: Annotated[Font, typer.Option(parser=choice_parser(FONTS), help="figure font")] = "sans",
    usetex: Annotated[
        bool, typer.Option("--usetex", help="typeset figure text with LaTeX (needs it installed)")
    ] = False,
    strip: Annotated[
        bool,
        typer.Option("--strip/--no-strip", help="accuracy strip with a cursor under the animation"),
    ] = True,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="plain log lines, no progress bar")
    ] = False,
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


# --- export (cl-analyze export) ---

EXPORT_TARGETS = ("tensorboard", "wandb")  # export.EXPORT_TARGETS, written out (start-up time)
if TYPE_CHECKING:
    ExportTarget: TypeAlias = str
else:
    ExportTarget = Literal[EXPORT_TARGETS]


@app.command(cls=Command)
def export(
    run: Annotated[Path, typer.Argument(help="run folder (artifacts/run1)")],
    to: Annotated[
        ExportTarget,
        typer.Option(parser=choice_parser(EXPORT_TARGETS), help="where to open the run"),
    ] = "tensorboard",
    out: Annotated[
        Path | None,
        typer.Option(
            show_default="tensorboard/<run>, or wandb/", help="a new folder (never overwritten)"
        ),
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(
            show_default="first,peak,last", help="projector epochs: numbers, first, peak, last, all"
        ),
    ] = None,
    split: Annotated[
        Split, typer.Option(parser=choice_parser(SPLITS), help="split shown in the projector")
    ] = "test",
    sprite: Annotated[
        bool, typer.Option("--sprite/--no-sprite", help="digit images on the projector's points")
    ] = True,
    data_dir: Annotated[
        Path | None,
        typer.Option(show_default="the run's", envvar=DATA_ENV, help="where the digits are"),
    ] = None,
    max_points: Annotated[
        int | None,
        typer.Option(show_default="all", help="projector points per epoch, stratified"),
    ] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="the cached metrics as scalars too")
    ] = True,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="wandb: log the report's figures")
    ] = True,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="plain log lines, no progress bar")
    ] = False,
) -> None:
    """Open a run in TensorBoard (scalars, embedding projector) or Weights & Biases (offline).

    The last line printed is the folder written."""
    from cl_analyze.export import ExportOptions, export_run, parse_export_epochs
    from cl_analyze.progress import Reporter

    options = ExportOptions(
        target=to,
        out=out,
        epochs=parse_export_epochs(epochs),
        split=split,
        sprite=sprite,
        data_dir=data_dir,
        metrics=metrics,
        figures=figures,
        max_points=max_points,
    )
    with Reporter(quiet=quiet) as reporter:
        folder = export_run(run, options, reporter)
    print(folder)


app.command(cls=Command)(sweep)


def main() -> None:
    """Console entry point: bad input, whether the parser or the core finds it, is one line on
    stderr and exit code 2, never a traceback."""
    # Typer's own copy of click: the base class of every parse error (bad value, no such option).
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    try:
        code = app(prog_name="cl-analyze", standalone_mode=False)
    except CLAnalyzeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except NoArgsIsHelpError:
        sys.exit(2)  # the help is printed already
    except ClickException as error:
        where = getattr(error, "ctx", None)
        hint = f" (see `{where.command_path} --help`)" if where is not None else ""
        print(f"error: {error.format_message()}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

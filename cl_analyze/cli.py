"""The command line: a thin Typer layer that builds a frozen config and calls one core function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

import typer

from cl_analyze.cli_figures import plot, report
from cl_analyze.cli_help import Command, Group, choice_parser
from cl_analyze.cli_options import DATA_ENV, DEVICE_ENV, Dataset, parse_device
from cl_analyze.cli_train import sweep, train
from cl_analyze.config import DATASETS
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import SPLITS

if TYPE_CHECKING:  # see cli_options: Typer lists and completes a Literal's values
    Split: TypeAlias = str
else:
    Split = Literal[SPLITS]

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


# plot and report (cli_figures), in the order --help lists the commands
app.command(cls=Command)(plot)
app.command(cls=Command)(report)


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

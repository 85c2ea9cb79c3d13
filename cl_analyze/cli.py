"""The command line: a thin Typer layer that builds a frozen config and calls one core function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cl_analyze.errors import CLAnalyzeError

app = typer.Typer(
    name="cl-analyze",
    help="Study how a loss shapes learned features: softmax vs center loss on LeNet++.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)
DEFAULT_ARTIFACTS = Path("artifacts")


@app.callback()
def _root() -> None:
    """Study how a loss shapes learned features: softmax vs center loss on LeNet++."""


def _train_options(values: dict[str, Any]) -> dict[str, Any]:
    """The train options the user actually passed, from a command's ``locals()``."""
    from dataclasses import fields

    from cl_analyze.config import TrainConfig

    names = {field.name for field in fields(TrainConfig)}
    return {name: value for name, value in values.items() if name in names and value is not None}


# Train options, shared by `train` and `sweep`. None means "not given": a resume keeps the
# stored value and a sweep keeps the config default, so neither mistakes a default for a choice.
LossOption = Annotated[str | None, typer.Option(help="softmax or center [default: center]")]
DatasetOption = Annotated[
    str | None, typer.Option(help="mnist-5k, mnist or fashion-mnist [default: mnist]")
]
DataDirOption = Annotated[
    str | None, typer.Option(help="folder with the IDX files [default: data]")
]
DownloadOption = Annotated[
    bool | None,
    typer.Option("--download/--no-download", help="download missing files [default: on]"),
]
LimitTrainOption = Annotated[
    int | None, typer.Option(help="stratified train subset size [default: all]")
]
LimitTestOption = Annotated[
    int | None, typer.Option(help="stratified test subset size [default: all]")
]
FeatDimOption = Annotated[int | None, typer.Option(help="feature dimension [default: 2]")]
EpochsOption = Annotated[int | None, typer.Option(help="epochs [default: 100]")]
BatchSizeOption = Annotated[int | None, typer.Option(help="batch size [default: 128]")]
LrOption = Annotated[float | None, typer.Option(help="model SGD lr [default: 0.001]")]
MomentumOption = Annotated[float | None, typer.Option(help="model momentum [default: 0.9]")]
WeightDecayOption = Annotated[float | None, typer.Option(help="model weight decay [default: 5e-4]")]
StepSizeOption = Annotated[int | None, typer.Option(help="StepLR step [default: 20]")]
GammaOption = Annotated[float | None, typer.Option(help="StepLR gamma [default: 0.5]")]
CenterWeightOption = Annotated[
    float | None, typer.Option(help="lambda, the center-loss weight [default: 1]")
]
CenterLrOption = Annotated[
    float | None, typer.Option(help="centers' SGD lr (update sgd) [default: 0.5]")
]
CenterUpdateOption = Annotated[
    str | None, typer.Option(help="sgd (reference) or paper (Wen et al.) [default: sgd]")
]
AlphaOption = Annotated[
    float | None, typer.Option(help="paper update's center rate [default: 0.5]")
]
SeedOption = Annotated[int | None, typer.Option(help="random seed [default: 1]")]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N [default: auto]")]
DeterministicOption = Annotated[
    bool | None,
    typer.Option(
        "--deterministic/--no-deterministic",
        help="bit-identical reruns on CPU [default: off]",
    ),
]
PrecisionOption = Annotated[
    str | None, typer.Option(help="fp32 or bf16 (autocast) [default: fp32]")
]
EmbedOption = Annotated[
    bool | None,
    typer.Option("--embed/--no-embed", help="store every epoch's embeddings [default: on]"),
]
EvalBatchSizeOption = Annotated[
    int | None, typer.Option(help="batch size of the embedding pass [default: 1024]")
]
KeepCheckpointsOption = Annotated[
    str | None, typer.Option(help="last (last + best) or all [default: last]")
]


@app.command()
def train(
    loss: LossOption = None,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = None,
    limit_train: LimitTrainOption = None,
    limit_test: LimitTestOption = None,
    feat_dim: FeatDimOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    momentum: MomentumOption = None,
    weight_decay: WeightDecayOption = None,
    step_size: StepSizeOption = None,
    gamma: GammaOption = None,
    center_weight: CenterWeightOption = None,
    center_lr: CenterLrOption = None,
    center_update: CenterUpdateOption = None,
    alpha: AlphaOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    deterministic: DeterministicOption = None,
    precision: PrecisionOption = None,
    embed: EmbedOption = None,
    eval_batch_size: EvalBatchSizeOption = None,
    keep_checkpoints: KeepCheckpointsOption = None,
    out: Annotated[
        Path | None, typer.Option(help="run folder [default: next artifacts/runN]")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this folder")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace the run in --out")] = False,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no progress bar")] = False,
) -> None:
    """Train LeNet++ with softmax or softmax + center loss, recording every epoch."""
    from cl_analyze.config import TrainConfig
    from cl_analyze.progress import Reporter
    from cl_analyze.training.fit import fit, stored_config
    from cl_analyze.training.run_folder import next_run_dir
    from cl_analyze.training.stopping import TrainingStopped

    given = _train_options(locals())
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise CLAnalyzeError("--resume already names the run folder: drop --out")
        if overwrite:
            raise CLAnalyzeError("--resume and --overwrite contradict each other: pick one")
        config = stored_config(resume).merge_for_resume(given)
        run_dir = resume
    else:
        config = TrainConfig(**given)
        run_dir = out if out is not None else next_run_dir(DEFAULT_ARTIFACTS)
    reporter = Reporter(quiet=quiet)
    try:
        store = fit(
            config, run_dir, resume=resume is not None, overwrite=overwrite, reporter=reporter
        )
    except CLAnalyzeError:
        if out is None and resume is None:  # the runN folder claimed above, still empty
            _remove_if_empty(run_dir)
        raise
    except TrainingStopped as stopped:
        err_console.print(stopped.message(), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        if out is None and resume is None:
            _remove_if_empty(run_dir)
        err_console.print("interrupted before training started: nothing was written")
        raise typer.Exit(130) from None
    reporter.log(f"done: {store}")


# --- embed (cl-analyze embed) ---
@app.command("embed")
def embed_command(
    run: Annotated[Path, typer.Argument(help="run folder written by `cl-analyze train`")],
    checkpoint: Annotated[str, typer.Option(help="last, best or an epoch number")] = "last",
    dataset: Annotated[
        str | None, typer.Option(help="mnist-5k, mnist or fashion-mnist [default: the run's]")
    ] = None,
    split: Annotated[str, typer.Option(help="train or test")] = "test",
    images: Annotated[
        Path | None, typer.Option(help="embed a folder of images in class subfolders instead")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="folder with the IDX files [default: the run's]")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="embed a stratified subset of N images")] = None,
    out: Annotated[
        Path | None, typer.Option(help="store to write [default: RUN/embed-...-epochE.h5]")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 1024,
    all_checkpoints: Annotated[
        bool,
        typer.Option(help="rebuild a --no-embed run's per-epoch embeddings in its run.h5"),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no progress bar")] = False,
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


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(help="run folders (artifacts/run1 ...)")],
    out: Annotated[
        Path | None,
        typer.Option(help="new folder, or one plot wrote [default: reports/<first run>-plots]"),
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(
            help="scatter epochs, e.g. 0,12,32,last (first/peak/last) [default: first,peak,last]"
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="train, test or both")] = "both",
    max_points: Annotated[
        int | None, typer.Option(help="points per split and run, stratified [default: 10000]")
    ] = 10_000,
    dims: Annotated[
        str | None, typer.Option(help="two raw feature dimensions, e.g. 0,1 [default: PCA if D>2]")
    ] = None,
    style: Annotated[str, typer.Option(help="paper (3.4 in column) or slides")] = "paper",
    animation: Annotated[
        bool, typer.Option("--animation/--no-animation", help="write the per-epoch animation")
    ] = True,
    formats: Annotated[str, typer.Option(help="animation formats: gif,mp4")] = "gif,mp4",
    fps: Annotated[float, typer.Option(help="animation frames (epochs) per second")] = 8.0,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="load geometry metrics for titles/curves")
    ] = True,
    allow_mixed: Annotated[bool, typer.Option(help="allow runs on different datasets")] = False,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no progress bar")] = False,
) -> None:
    """Scatter, curve, center and heatmap figures (PNG + PDF) and a side-by-side animation."""
    from cl_analyze.progress import Reporter
    from cl_analyze.viz.plot import PlotOptions, parse_dims, parse_epochs, parse_formats, plot_runs

    options = PlotOptions(
        out=out,
        epochs=parse_epochs(epochs),
        split=split,
        max_points=max_points,
        dims=parse_dims(dims),
        style=style,
        animation=animation,
        animation_formats=parse_formats(formats),
        fps=fps,
        allow_mixed=allow_mixed,
        metrics=metrics,
    )
    with Reporter(quiet=quiet) as reporter:
        result = plot_runs(runs, options, reporter)
    reporter.log(f"{len(result.files)} files in {result.out_dir}")


# --- report (cl-analyze report) ---


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders (or a sweep folder)")],
    out: Annotated[
        Path | None, typer.Option(help="report folder [default: reports/<first run's name>]")
    ] = None,
    epochs: Annotated[
        str | None,
        typer.Option(help="scatter epochs, e.g. 0,12,peak,last [default: 0, 97%, peak, last]"),
    ] = None,
    last_k: Annotated[int, typer.Option(help="epochs averaged for the decline")] = 5,
    threshold: Annotated[float, typer.Option(help="accuracy to reach, as 97 or 0.97")] = 97.0,
    allow_mixed: Annotated[
        bool, typer.Option(help="allow runs on different datasets side by side")
    ] = False,
    animation: Annotated[
        bool, typer.Option("--animation/--no-animation", help="GIF + MP4 of the runs")
    ] = True,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="draw figures (off: text and data)")
    ] = True,
    max_points: Annotated[int, typer.Option(help="points per scatter panel")] = 2000,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no progress bar")] = False,
) -> None:
    """Write a report (index.html, report.md, summary.json, metrics.csv) on one or more runs.

    The last line printed is the path of index.html."""
    from cl_analyze.progress import Reporter
    from cl_analyze.report import ReportOptions, build_report
    from cl_analyze.viz.plot import parse_epochs

    options = ReportOptions(
        out=out,
        epochs=parse_epochs(epochs),
        last_k=last_k,
        threshold=threshold / 100 if threshold > 1 else threshold,
        allow_mixed=allow_mixed,
        animation=animation,
        figures=figures,
        max_points=max_points,
    )
    with Reporter(quiet=quiet) as reporter:
        index = build_report(runs, options, reporter)
    print(index)


# --- sweep (cl-analyze sweep) ---


@app.command()
def sweep(
    grid: Annotated[
        list[str] | None,
        typer.Option(help="OPTION=V1,V2,... swept train option (repeat for more axes)"),
    ] = None,
    grid_file: Annotated[
        Path | None, typer.Option(help="TOML file: a grid table of lists, optionally a fixed table")
    ] = None,
    backend: Annotated[str, typer.Option(help="local (processes here) or ray")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray)")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="runs at once (default: 1 local; on a Ray cluster its GPUs or CPUs)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="sweep folder (default: next artifacts/sweepN)")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="continue the sweep in this folder")] = None,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no live table")] = False,
    loss: LossOption = None,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = None,
    limit_train: LimitTrainOption = None,
    limit_test: LimitTestOption = None,
    feat_dim: FeatDimOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    momentum: MomentumOption = None,
    weight_decay: WeightDecayOption = None,
    step_size: StepSizeOption = None,
    gamma: GammaOption = None,
    center_weight: CenterWeightOption = None,
    center_lr: CenterLrOption = None,
    center_update: CenterUpdateOption = None,
    alpha: AlphaOption = None,
    seed: SeedOption = None,
    device: DeviceOption = None,
    deterministic: DeterministicOption = None,
    precision: PrecisionOption = None,
    embed: EmbedOption = None,
    eval_batch_size: EvalBatchSizeOption = None,
    keep_checkpoints: KeepCheckpointsOption = None,
) -> None:
    """Train one run per combination of --grid values (train options as in `cl-analyze train`)."""
    from cl_analyze.sweep import run_sweep, sweep_spec

    fixed = _train_options(locals())
    spec = sweep_spec(
        grid or [],
        grid_file,
        fixed,
        out=out,
        resume=resume,
        root=DEFAULT_ARTIFACTS,
        backend=backend,
        jobs=jobs,
        address=address,
        quiet=quiet,
    )
    result = run_sweep(spec, console=err_console)
    folder = result.sweep_dir
    if result.interrupted:
        print(
            f"interrupted: {result.count('interrupted')} runs stopped, completed epochs are saved;"
            f" continue with `cl-analyze sweep --resume {folder}`",
            file=sys.stderr,
        )
        raise typer.Exit(130)
    for run in result.failed:
        print(f"failed: {run.name}: {run.error} (log: {run.log})", file=sys.stderr)
    if result.failed:
        print(
            f"{len(result.failed)} of {len(result.runs)} runs failed in {folder}: fix the cause,"
            f" then rerun `cl-analyze sweep --resume {folder}`",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    skipped = sum(run.action == "skipped" for run in result.runs)
    print(f"done: {folder} ({len(result.runs)} runs, {skipped} already complete)", file=sys.stderr)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def main() -> None:
    """Console entry point: project errors become one line on stderr and exit code 2."""
    try:
        app()
    except CLAnalyzeError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

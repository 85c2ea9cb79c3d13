"""`cl-analyze train` and `cl-analyze sweep`: the commands that train runs, on the options of
``cli_options``. ``cli`` registers them on the app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeAlias

import typer
from rich.console import Console

from cl_analyze.cli_help import choice_parser
from cl_analyze.cli_options import (
    ARTIFACTS_ENV,
    DEFAULTS,
    OUTPUT,
    RUN_FOLDER,
    AlphaOption,
    BatchSizeOption,
    CenterLrOption,
    CenterUpdateOption,
    CenterWeightOption,
    DataDirOption,
    DatasetOption,
    DeterministicOption,
    DeviceOption,
    DownloadOption,
    EmbedOption,
    EmbedTrainLimitOption,
    EpochsOption,
    EvalBatchSizeOption,
    FeatDimOption,
    GammaOption,
    KeepCheckpointsOption,
    LimitTestOption,
    LimitTrainOption,
    LossOption,
    LrOption,
    MomentumOption,
    PrecisionOption,
    QuietOption,
    SeedOption,
    StepSizeOption,
    WeightDecayOption,
    artifacts_root,
    config_file_options,
    given_options,
)
from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.sweep.grid import BACKENDS

SWEEP = "Sweep"

if TYPE_CHECKING:  # see cli_options: Typer lists and completes a Literal's values
    Backend: TypeAlias = str
else:
    Backend = Literal[BACKENDS]

err_console = Console(stderr=True)


def train(
    ctx: typer.Context,
    dataset: DatasetOption = DEFAULTS.dataset,
    data_dir: DataDirOption = DEFAULTS.data_dir,
    download: DownloadOption = DEFAULTS.download,
    limit_train: LimitTrainOption = DEFAULTS.limit_train,
    limit_test: LimitTestOption = DEFAULTS.limit_test,
    loss: LossOption = DEFAULTS.loss,
    feat_dim: FeatDimOption = DEFAULTS.feat_dim,
    center_weight: CenterWeightOption = DEFAULTS.center_weight,
    center_update: CenterUpdateOption = DEFAULTS.center_update,
    center_lr: CenterLrOption = DEFAULTS.center_lr,
    alpha: AlphaOption = DEFAULTS.alpha,
    epochs: EpochsOption = DEFAULTS.epochs,
    batch_size: BatchSizeOption = DEFAULTS.batch_size,
    lr: LrOption = DEFAULTS.lr,
    momentum: MomentumOption = DEFAULTS.momentum,
    weight_decay: WeightDecayOption = DEFAULTS.weight_decay,
    step_size: StepSizeOption = DEFAULTS.step_size,
    gamma: GammaOption = DEFAULTS.gamma,
    seed: SeedOption = DEFAULTS.seed,
    device: DeviceOption = DEFAULTS.device,
    deterministic: DeterministicOption = DEFAULTS.deterministic,
    precision: PrecisionOption = DEFAULTS.precision,
    out: Annotated[
        Path | None,
        typer.Option(
            show_default=f"the next free runN in ${ARTIFACTS_ENV}, else in artifacts/",
            help="run folder: new or empty",
            rich_help_panel=RUN_FOLDER,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the run in this folder", rich_help_panel=RUN_FOLDER),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="replace the run in --out", rich_help_panel=RUN_FOLDER),
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="rerun a run: its config.json (or its folder); options given here override it",
            rich_help_panel=RUN_FOLDER,
        ),
    ] = None,
    embed: EmbedOption = DEFAULTS.embed,
    embed_train_limit: EmbedTrainLimitOption = DEFAULTS.embed_train_limit,
    eval_batch_size: EvalBatchSizeOption = DEFAULTS.eval_batch_size,
    keep_checkpoints: KeepCheckpointsOption = DEFAULTS.keep_checkpoints,
    quiet: QuietOption = False,
) -> None:
    """Train LeNet++ with softmax or softmax + center loss, recording every epoch."""
    from cl_analyze.progress import Reporter
    from cl_analyze.training.fit import fit, stored_config
    from cl_analyze.training.run_folder import next_run_dir
    from cl_analyze.training.stopping import TrainingStopped

    given = given_options(ctx)
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise CLAnalyzeError("--resume already names the run folder: drop --out")
        if overwrite:
            raise CLAnalyzeError("--resume and --overwrite contradict each other: pick one")
        if config_file is not None:
            raise CLAnalyzeError("--resume continues with the run's own config: drop --config")
        config = stored_config(resume).merge_for_resume(given)
        run_dir = resume
    else:
        stored = config_file_options(config_file) if config_file is not None else {}
        config = TrainConfig(**{**stored, **given})
        # A first run creates the artifacts folder too: a failed one leaves neither behind.
        root_existed = artifacts_root().exists()
        run_dir = out if out is not None else next_run_dir(artifacts_root())
    reporter = Reporter(quiet=quiet)

    def unclaim() -> None:
        """Remove the runN folder claimed above (still empty), and its root if this made it."""
        if out is None and resume is None:
            _remove_if_empty(run_dir)
            if not root_existed:
                _remove_if_empty(run_dir.parent)

    try:
        store = fit(
            config, run_dir, resume=resume is not None, overwrite=overwrite, reporter=reporter
        )
    except CLAnalyzeError:
        unclaim()
        raise
    except TrainingStopped as stopped:
        err_console.print(stopped.message(), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        unclaim()
        err_console.print("interrupted before training started: nothing was written")
        raise typer.Exit(130) from None
    reporter.log(f"done: {store}")


def sweep(
    ctx: typer.Context,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<option=v1,v2,...>",
            show_default="none",
            help="a swept train option and its values; repeat for more axes",
            rich_help_panel=SWEEP,
        ),
    ] = None,
    grid_file: Annotated[
        Path | None,
        typer.Option(
            help="TOML file: a grid table of lists, optionally a fixed table",
            rich_help_panel=SWEEP,
        ),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            parser=choice_parser(BACKENDS),
            help="local: processes here; ray: Ray tasks",
            rich_help_panel=SWEEP,
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            show_default="a local Ray started for the sweep",
            help="Ray cluster address",
            rich_help_panel=SWEEP,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            show_default="1 local; on a Ray cluster its GPUs or CPUs",
            help="runs at once",
            rich_help_panel=SWEEP,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            show_default=f"the next free sweepN in ${ARTIFACTS_ENV}, else in artifacts/",
            help="sweep folder",
            rich_help_panel=RUN_FOLDER,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the sweep in this folder", rich_help_panel=RUN_FOLDER),
    ] = None,
    dataset: DatasetOption = DEFAULTS.dataset,
    data_dir: DataDirOption = DEFAULTS.data_dir,
    download: DownloadOption = DEFAULTS.download,
    limit_train: LimitTrainOption = DEFAULTS.limit_train,
    limit_test: LimitTestOption = DEFAULTS.limit_test,
    loss: LossOption = DEFAULTS.loss,
    feat_dim: FeatDimOption = DEFAULTS.feat_dim,
    center_weight: CenterWeightOption = DEFAULTS.center_weight,
    center_update: CenterUpdateOption = DEFAULTS.center_update,
    center_lr: CenterLrOption = DEFAULTS.center_lr,
    alpha: AlphaOption = DEFAULTS.alpha,
    epochs: EpochsOption = DEFAULTS.epochs,
    batch_size: BatchSizeOption = DEFAULTS.batch_size,
    lr: LrOption = DEFAULTS.lr,
    momentum: MomentumOption = DEFAULTS.momentum,
    weight_decay: WeightDecayOption = DEFAULTS.weight_decay,
    step_size: StepSizeOption = DEFAULTS.step_size,
    gamma: GammaOption = DEFAULTS.gamma,
    seed: SeedOption = DEFAULTS.seed,
    device: DeviceOption = DEFAULTS.device,
    deterministic: DeterministicOption = DEFAULTS.deterministic,
    precision: PrecisionOption = DEFAULTS.precision,
    embed: EmbedOption = DEFAULTS.embed,
    embed_train_limit: EmbedTrainLimitOption = DEFAULTS.embed_train_limit,
    eval_batch_size: EvalBatchSizeOption = DEFAULTS.eval_batch_size,
    keep_checkpoints: KeepCheckpointsOption = DEFAULTS.keep_checkpoints,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="plain log lines, no live table", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """Train one run per combination of --grid values (train options as in `cl-analyze train`)."""
    from cl_analyze.sweep import run_sweep, sweep_spec

    spec = sweep_spec(
        grid or [],
        grid_file,
        given_options(ctx),
        out=out,
        resume=resume,
        root=artifacts_root(),
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

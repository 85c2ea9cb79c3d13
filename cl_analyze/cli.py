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


def _given(**options: Any) -> dict[str, Any]:
    """The options the user actually passed (None means 'not given')."""
    return {name: value for name, value in options.items() if value is not None}


@app.command()
def train(
    loss: Annotated[str | None, typer.Option(help="softmax or center [default: center]")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist-5k, mnist or fashion-mnist [default: mnist]")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="folder with the IDX files [default: data]")
    ] = None,
    download: Annotated[
        bool | None,
        typer.Option("--download/--no-download", help="download missing files [default: on]"),
    ] = None,
    limit_train: Annotated[
        int | None, typer.Option(help="stratified train subset size [default: all]")
    ] = None,
    limit_test: Annotated[
        int | None, typer.Option(help="stratified test subset size [default: all]")
    ] = None,
    feat_dim: Annotated[int | None, typer.Option(help="feature dimension [default: 2]")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs [default: 100]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size [default: 128]")] = None,
    lr: Annotated[float | None, typer.Option(help="model SGD lr [default: 0.001]")] = None,
    momentum: Annotated[float | None, typer.Option(help="model momentum [default: 0.9]")] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="model weight decay [default: 5e-4]")
    ] = None,
    step_size: Annotated[int | None, typer.Option(help="StepLR step [default: 20]")] = None,
    gamma: Annotated[float | None, typer.Option(help="StepLR gamma [default: 0.5]")] = None,
    center_weight: Annotated[
        float | None, typer.Option(help="lambda, the center-loss weight [default: 1]")
    ] = None,
    center_lr: Annotated[
        float | None, typer.Option(help="centers' SGD lr (update sgd) [default: 0.5]")
    ] = None,
    center_update: Annotated[
        str | None, typer.Option(help="sgd (reference) or paper (Wen et al.) [default: sgd]")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="paper update's center rate [default: 0.5]")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed [default: 1]")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or cuda:N [default: auto]")
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--no-deterministic",
            help="bit-identical reruns on CPU [default: off]",
        ),
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="fp32 or bf16 (autocast) [default: fp32]")
    ] = None,
    embed: Annotated[
        bool | None,
        typer.Option("--embed/--no-embed", help="store every epoch's embeddings [default: on]"),
    ] = None,
    eval_batch_size: Annotated[
        int | None, typer.Option(help="batch size of the embedding pass [default: 1024]")
    ] = None,
    keep_checkpoints: Annotated[
        str | None, typer.Option(help="last (last + best) or all [default: last]")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run folder [default: next artifacts/runN]")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this folder")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace the run in --out")] = False,
    quiet: Annotated[bool, typer.Option(help="plain log lines, no progress bar")] = False,
) -> None:
    """Train LeNet++ with softmax or softmax + center loss, recording every epoch."""
    from cl_analyze.config import TrainConfig
    from cl_analyze.progress import Reporter
    from cl_analyze.train import fit, next_run_dir, stored_config

    given = _given(
        loss=loss,
        dataset=dataset,
        data_dir=data_dir,
        download=download,
        limit_train=limit_train,
        limit_test=limit_test,
        feat_dim=feat_dim,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        step_size=step_size,
        gamma=gamma,
        center_weight=center_weight,
        center_lr=center_lr,
        center_update=center_update,
        alpha=alpha,
        seed=seed,
        device=device,
        deterministic=deterministic,
        precision=precision,
        embed=embed,
        eval_batch_size=eval_batch_size,
        keep_checkpoints=keep_checkpoints,
    )
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise CLAnalyzeError("--resume already names the run folder: drop --out")
        if overwrite:
            raise CLAnalyzeError("--resume and --overwrite contradict each other: pick one")
        if not (resume / "last.pt").is_file():
            raise CLAnalyzeError(
                f"--resume {resume}: no run there (no last.pt):"
                " point it at a folder written by `cl-analyze train`"
            )
        config = stored_config(resume).merge_for_resume(given)
        run_dir = resume
    else:
        config = TrainConfig(**given)
        run_dir = out if out is not None else next_run_dir(DEFAULT_ARTIFACTS)
    reporter = Reporter(quiet=quiet)
    reporter.log(f"run folder: {run_dir}")
    try:
        store = fit(config, run_dir, resume=resume is not None, overwrite=overwrite, reporter=reporter)
    except CLAnalyzeError:
        _remove_if_empty(run_dir)
        raise
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: completed epochs are saved in {run_dir};"
            f" continue with `cl-analyze train --resume {run_dir}`"
        )
        raise typer.Exit(130) from None
    reporter.log(f"done: {store}")


# --- embed (cl-analyze embed) ---


# --- plot (cl-analyze plot) ---


# --- report (cl-analyze report) ---


# --- sweep (cl-analyze sweep) ---


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

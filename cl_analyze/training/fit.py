"""A whole run: the folder, the store, checkpoints and resume around the epoch loop."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_analyze.atomic import write_text_atomic
from cl_analyze.config import TrainConfig
from cl_analyze.data import Dataset, Split, load_dataset, stratified_subset
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.hardware import hardware_description, precision_warning, resolve_precision
from cl_analyze.progress import Reporter
from cl_analyze.store import (
    STORE_NAME,
    RunStore,
    RunWriter,
    remove_stale_partials,
    run_lock,
)
from cl_analyze.training import stopping
from cl_analyze.training.checkpoints import (
    BEST,
    LAST,
    epoch_checkpoint_name,
    load_checkpoint,
    save_checkpoint,
)
from cl_analyze.training.loop import (
    EpochStats,
    TrainState,
    evaluate,
    resolve_device,
    train_one_epoch,
)
from cl_analyze.training.run_folder import check_restartable, check_run_folder, clear_run

HISTORY_NAMES = (
    "lr",
    "center_lr",
    "train_loss_ce",
    "train_loss_center",
    "train_accuracy",
    "train_accuracy_eval",
    "test_accuracy",
    "test_loss_ce",
    "train_time_s",
    "embed_time_s",
    "elapsed_s",
)


CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


def configure_determinism(config: TrainConfig) -> None:
    if config.deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        # Switching it off imports torch's compiler stack (seconds): only do it when it is on.
        if torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def process_state_restored() -> Iterator[None]:
    """Put back what training changes for the whole process (the determinism switches, cuDNN's
    autotuning, cuBLAS's workspace variable, the global RNG that seeds the model): a notebook's
    or a reused sweep worker's later work must not run under a finished run's settings."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn
    benchmark, cudnn_deterministic = cudnn.benchmark, cudnn.deterministic
    workspace = os.environ.get(CUBLAS_WORKSPACE)
    cuda_rng = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_rng):
        try:
            yield
        finally:
            if (deterministic, warn_only) != (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            ):
                torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            cudnn.benchmark, cudnn.deterministic = benchmark, cudnn_deterministic
            if workspace is None:
                os.environ.pop(CUBLAS_WORKSPACE, None)
            else:
                os.environ[CUBLAS_WORKSPACE] = workspace


def stored_config(run_dir: Path) -> TrainConfig:
    """The config a run was trained with: from its last checkpoint, or from its store when it
    stopped before the first checkpoint."""
    check_run_folder(run_dir, resume=True, overwrite=False)
    if (run_dir / LAST).is_file():
        return TrainConfig.from_dict(load_checkpoint(run_dir / LAST)["config"])
    with RunStore(run_dir) as store:
        return TrainConfig.from_dict(store.config)


def fit(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> Path:
    """Train (or continue) a run in ``run_dir``, recording every epoch; returns the store path.

    Ctrl-C or SIGTERM stops it within a batch with ``stopping.TrainingStopped``; a failed write
    (a full disk) is a ``CLAnalyzeError`` saying what is saved. Either way ``--resume`` goes on.
    """
    reporter = reporter or Reporter(quiet=True)
    check_run_folder(run_dir, resume=resume, overwrite=overwrite)
    # Everything that can fail on bad input comes before the folder is touched.
    device = resolve_device(config.device)
    # The stored config records what ran: auto becomes fp32 or bf16 for this device.
    config = config.replace(precision=resolve_precision(config.precision, device))
    dataset = load_dataset(
        config.dataset,
        config.data_dir,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        download=config.download,
    ).to(device)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CLAnalyzeError(
            f"cannot create {run_dir} ({error.strerror}): pass another --out"
        ) from None
    with run_lock(run_dir, "train"), stopping.stop_on_signals(), process_state_restored():
        remove_stale_partials(run_dir)
        if overwrite and not resume:
            clear_run(run_dir)
        if resume and not (run_dir / LAST).is_file():
            check_restartable(run_dir)
            reporter.log(f"{run_dir} stopped before its first checkpoint: starting it again")
            resume = False
        return _fit_locked(config, run_dir, dataset, device, resume=resume, reporter=reporter)


def _write_or_explain(
    action: Callable[[], None], what: Path, run_dir: Path, saved_epoch: int | None
) -> None:
    """Run a store or checkpoint write; a failure (a full disk) becomes one line saying what is
    safe. torch reports failed writes as RuntimeError, the filesystem and HDF5 as OSError."""
    try:
        action()
    except (OSError, RuntimeError) as error:
        # torch's message is its C++ assertion; the OS error's is the one to show.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "write failed"
        raise CLAnalyzeError(
            f"cannot write {what} ({reason}; is the disk full?):"
            f" {stopping.saved_words(saved_epoch)} in {run_dir}; free space, then"
            f" `cl-analyze train --resume {run_dir}`"
        ) from None


def _fit_locked(
    config: TrainConfig,
    run_dir: Path,
    dataset: Dataset,
    device: torch.device,
    *,
    resume: bool,
    reporter: Reporter,
) -> Path:
    configure_determinism(config)
    state = TrainState.build(config, dataset.num_classes, device)
    store_file = run_dir / STORE_NAME
    saved_epoch: int | None = None  # the epoch in last.pt: what a resume continues from

    if resume:
        payload = load_checkpoint(run_dir / LAST, map_location=device)
        state.load_state_dict(payload)
        start_epoch = int(payload["epoch"]) + 1
        saved_epoch = start_epoch - 1
        best_accuracy = float(payload["best_accuracy"])
        elapsed_before = float(payload["elapsed_s"])
        writer = RunWriter.resume(store_file, keep_rows=start_epoch, config=config.to_dict())
        if writer.rows < start_epoch:
            rows = writer.rows  # read before closing: a closed file has no attributes
            writer.close()
            raise CLAnalyzeError(
                f"{store_file} holds {rows} epoch{'' if rows == 1 else 's'} but {LAST} is at epoch"
                f" {start_epoch - 1}: the store is damaged; start again with --overwrite"
            )
    else:
        start_epoch, best_accuracy, elapsed_before = 0, -1.0, 0.0
        writers: list[RunWriter] = []

        def create() -> None:
            writers.append(
                RunWriter.create(
                    store_file,
                    dataset=dataset.name,
                    class_names=dataset.class_names,
                    feat_dim=config.feat_dim,
                    splits={
                        name: (s.labels.cpu().numpy(), s.indices.cpu().numpy())
                        for name, s in (
                            ("train", recorded_split(dataset, config, "train")),
                            ("test", dataset.test),
                        )
                    },
                    history_names=HISTORY_NAMES,
                    with_centers=config.loss == "center",
                    with_classifier=True,
                    evaluated_splits=("train", "test") if config.embed else ("test",),
                    config=config.to_dict(),
                    attrs={
                        "device": str(device),
                        "hardware": hardware_description(),
                        "precision": config.precision,
                    },
                )
            )

        _write_or_explain(create, store_file, run_dir, None)
        writer = writers[0]
    reporter.log(
        f"run folder: {run_dir}  ({dataset.name}, {config.loss} loss, {device}, {config.precision})"
    )
    warning = precision_warning(config.precision, device)
    if warning is not None:
        reporter.log(warning)
    if resume:
        reporter.log(f"resuming {run_dir} at epoch {start_epoch}")
    # Beside the store, never before it: a folder with a config.json but no run is not ours.
    _write_or_explain(
        lambda: write_text_atomic(run_dir / "config.json", config.to_json() + "\n"),
        run_dir / "config.json",
        run_dir,
        saved_epoch,
    )

    def checkpoint(epoch: int, accuracy: float, elapsed: float) -> None:
        nonlocal best_accuracy, saved_epoch
        payload = {
            **state.state_dict(),
            "epoch": epoch,
            "config": config.to_dict(),
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "dataset": dataset.name,
            "test_accuracy": accuracy,
            "best_accuracy": max(best_accuracy, accuracy),
            "elapsed_s": elapsed,
        }
        # best before last: last.pt's best_accuracy must never be ahead of best.pt.
        targets = []
        if accuracy > best_accuracy:
            targets.append(run_dir / BEST)
        if config.keep_checkpoints == "all":
            targets.append(run_dir / epoch_checkpoint_name(epoch))
        targets.append(run_dir / LAST)
        for target in targets:
            _write_or_explain(
                lambda target=target: save_checkpoint(target, payload),  # type: ignore[misc]
                target,
                run_dir,
                saved_epoch,
            )
        best_accuracy = max(best_accuracy, accuracy)
        saved_epoch = epoch

    def append(epoch: int, record: dict[str, Any]) -> None:
        _write_or_explain(
            lambda: writer.append_epoch(epoch, **record), store_file, run_dir, saved_epoch
        )

    clock_start = time.perf_counter() - elapsed_before
    try:
        with writer, reporter:
            if start_epoch == 0:
                record = _record_epoch(state, dataset, config, None)
                append(0, _with_time(record, 0.0, time.perf_counter() - clock_start))
                checkpoint(0, record["scalars"]["test_accuracy"], time.perf_counter() - clock_start)
                reporter.log(_epoch_line(0, config.epochs, record["scalars"]))
                start_epoch = 1
            for epoch in range(start_epoch, config.epochs + 1):
                stopping.check()
                stats = train_one_epoch(state, dataset, config, epoch, reporter)
                record = _record_epoch(state, dataset, config, stats)
                state.scheduler.step()
                elapsed = time.perf_counter() - clock_start
                append(epoch, _with_time(record, stats.seconds, elapsed))
                checkpoint(epoch, record["scalars"]["test_accuracy"], elapsed)
                reporter.log(_epoch_line(epoch, config.epochs, record["scalars"]))
    except KeyboardInterrupt as stop:
        name = stop.signal_name if isinstance(stop, stopping.StopRequested) else "SIGINT"
        raise stopping.TrainingStopped(run_dir, saved_epoch, name) from None
    return store_file


def recorded_split(dataset: Dataset, config: TrainConfig, name: str) -> Split:
    """The images a run embeds every epoch: the whole split, or with ``--embed-train-limit`` a
    fixed stratified subset of the train split (the same images every epoch)."""
    split = dataset.split(name)
    return stratified_subset(split, config.embed_train_limit) if name == "train" else split


def _record_epoch(
    state: TrainState, dataset: Dataset, config: TrainConfig, stats: EpochStats | None
) -> dict[str, Any]:
    """Embed both splits and gather one row of the store. ``stats`` is None before training."""
    start = time.perf_counter()
    evaluations = {}
    splits = ("train", "test") if config.embed else ("test",)
    for name in splits:
        evaluations[name] = evaluate(
            state.model,
            recorded_split(dataset, config, name),
            dataset.mean,
            dataset.std,
            batch_size=config.eval_batch_size,
            precision=config.precision,
        )
    scalars = {
        "lr": state.lr,
        "center_lr": state.center_lr,
        "train_loss_ce": math.nan if stats is None else stats.loss_ce,
        "train_loss_center": math.nan if stats is None else stats.loss_center,
        "train_accuracy": math.nan if stats is None else stats.accuracy,
        "train_accuracy_eval": evaluations["train"].accuracy
        if "train" in evaluations
        else math.nan,
        "test_accuracy": evaluations["test"].accuracy,
        "test_loss_ce": evaluations["test"].loss_ce,
        "embed_time_s": time.perf_counter() - start,
    }
    return {
        "scalars": scalars,
        "features": {k: v.features for k, v in evaluations.items()},
        "predictions": {k: v.predictions for k, v in evaluations.items()},
        "centers": state.centers(),
        "classifier": classifier_of(state.model),
    }


def classifier_of(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The last layer's (weight (C, D), bias (C,)), as the store keeps them."""
    layer = model.fc2
    assert isinstance(layer, torch.nn.Linear)
    weight = layer.weight.detach().float().cpu().numpy()
    bias = layer.bias.detach().float().cpu().numpy()
    return weight, bias


def _with_time(record: dict[str, Any], train_seconds: float, elapsed: float) -> dict[str, Any]:
    scalars = {**record["scalars"], "train_time_s": train_seconds, "elapsed_s": elapsed}
    return {**record, "scalars": scalars}


def _epoch_line(epoch: int, epochs: int, scalars: dict[str, float]) -> str:
    parts = [f"epoch {epoch:>3}/{epochs}", f"lr {scalars['lr']:.2g}"]
    if not math.isnan(scalars["train_loss_ce"]):
        parts.append(f"ce {scalars['train_loss_ce']:.4f}")
    if not math.isnan(scalars["train_loss_center"]):
        parts.append(f"center {scalars['train_loss_center']:.4f}")
    if not math.isnan(scalars["train_accuracy"]):
        parts.append(f"train {100 * scalars['train_accuracy']:.2f}%")
    parts.append(f"test {100 * scalars['test_accuracy']:.2f}%")
    return "  ".join(parts)

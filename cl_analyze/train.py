"""Training split as torchvision's reference: ``train_one_epoch``, ``evaluate`` and ``fit``."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cl_analyze import stopping
from cl_analyze.atomic import write_text_atomic
from cl_analyze.checkpoints import (
    BEST,
    LAST,
    epoch_checkpoint_name,
    load_checkpoint,
    save_checkpoint,
)
from cl_analyze.config import TrainConfig
from cl_analyze.data import Dataset, Split, iterate_batches, load_dataset, normalise
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.losses import CenterLoss
from cl_analyze.models import LeNetPlusPlus
from cl_analyze.progress import Reporter
from cl_analyze.store import (
    FORMAT,
    LOCK_NAME,
    STORE_NAME,
    RunStore,
    RunWriter,
    hardware_description,
    is_run_file,
    remove_stale_partials,
    run_lock,
)

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
# The progress bar reads the running losses at most every 20 steps (each read is a host-device
# sync), and at least 5 times an epoch.
DISPLAY_EVERY = 20


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLAnalyzeError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLAnalyzeError(
            f"--device {name} asked for, but CUDA is not available here: use --device cpu or auto"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise CLAnalyzeError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices"
        )
    if device.type not in ("cpu", "cuda"):
        raise CLAnalyzeError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device


@dataclass
class TrainState:
    """The model, the optional center loss and their optimizers: all a checkpoint restores."""

    model: LeNetPlusPlus
    center_loss: CenterLoss | None
    optimizer: torch.optim.Optimizer
    center_optimizer: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.StepLR

    @classmethod
    def build(cls, config: TrainConfig, num_classes: int, device: torch.device) -> TrainState:
        torch.manual_seed(config.seed)
        model = LeNetPlusPlus(num_classes=num_classes, feat_dim=config.feat_dim).to(device)
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size, gamma=config.gamma
        )
        center_loss = None
        center_optimizer = None
        if config.loss == "center":
            center_loss = CenterLoss(
                num_classes,
                config.feat_dim,
                update=config.center_update,  # type: ignore[arg-type]  # validated in config
                alpha=config.alpha,
            ).to(device)
            if config.center_update == "sgd":
                # The reference: plain SGD at lr 0.5, no momentum, no weight decay, no schedule.
                center_optimizer = torch.optim.SGD(center_loss.parameters(), lr=config.center_lr)
        return cls(model, center_loss, optimizer, center_optimizer, scheduler)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "center_loss": None if self.center_loss is None else self.center_loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "center_optimizer": None
            if self.center_optimizer is None
            else self.center_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.center_loss is not None:
            self.center_loss.load_state_dict(payload["center_loss"])
        if self.center_optimizer is not None:
            self.center_optimizer.load_state_dict(payload["center_optimizer"])

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def center_lr(self) -> float:
        if self.center_optimizer is not None:
            return float(self.center_optimizer.param_groups[0]["lr"])
        if self.center_loss is not None:
            return self.center_loss.alpha
        return math.nan

    def centers(self) -> np.ndarray | None:
        if self.center_loss is None:
            return None
        return self.center_loss.centers.detach().float().cpu().numpy()


@dataclass(frozen=True)
class EpochStats:
    loss_ce: float
    loss_center: float
    accuracy: float
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    """Embeddings of a whole split in eval mode: ``features`` (N, D), ``predictions`` (N,)."""

    features: np.ndarray
    predictions: np.ndarray
    accuracy: float
    loss_ce: float


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling seeded per epoch, so a resumed run draws the same batches as an unbroken one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_one_epoch(
    state: TrainState,
    dataset: Dataset,
    config: TrainConfig,
    epoch: int,
    reporter: Reporter,
) -> EpochStats:
    model, center_loss = state.model, state.center_loss
    device = next(model.parameters()).device
    model.train()
    split = dataset.train
    steps = math.ceil(len(split) / config.batch_size)
    reporter.start(f"epoch {epoch}/{config.epochs}", steps)
    display_every = max(1, min(DISPLAY_EVERY, steps // 5))
    # Running sums stay on the device: (cross-entropy * B, center loss * B, correct, seen).
    sums = torch.zeros(4, device=device, dtype=torch.float64)
    zero = torch.zeros((), device=device)
    start = time.perf_counter()
    batches = iterate_batches(
        split, config.batch_size, generator=epoch_generator(config.seed, epoch)
    )
    for step, (images, labels) in enumerate(batches, start=1):
        stopping.check()
        inputs = normalise(images, dataset.mean, dataset.std)
        with autocast(device, config.precision):
            features, logits = model(inputs)
        features, logits = features.float(), logits.float()
        loss_ce = F.cross_entropy(logits, labels)
        loss_center = zero if center_loss is None else center_loss(features, labels)
        loss = loss_ce if center_loss is None else loss_ce + config.center_weight * loss_center
        state.optimizer.zero_grad(set_to_none=True)
        if state.center_optimizer is not None:
            state.center_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        if center_loss is not None and state.center_optimizer is not None:
            center_loss.unscale_center_grad(config.center_weight)
            state.center_optimizer.step()
        elif center_loss is not None:
            center_loss.update_centers(features, labels)
        with torch.no_grad():
            batch = labels.shape[0]
            correct = (logits.argmax(1) == labels).sum()
            sums += torch.stack([loss_ce * batch, loss_center * batch, correct, zero + batch])
        if reporter.shows_progress and (step % display_every == 0 or step == steps):
            ce, center, right, seen = sums.tolist()
            shown = {"ce": ce / seen, "acc": right / seen}
            if center_loss is not None:
                shown["center"] = center / seen
            reporter.advance(1, shown)
        else:
            reporter.advance(1)
    ce, center, right, seen = sums.tolist()
    return EpochStats(
        loss_ce=ce / seen,
        loss_center=center / seen if center_loss is not None else math.nan,
        accuracy=right / seen,
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    mean: float,
    std: float,
    *,
    batch_size: int = 1024,
    precision: str = "fp32",
) -> Evaluation:
    """Embed a whole split in eval mode: features, predicted classes, accuracy, cross-entropy."""
    device = next(model.parameters()).device
    model.eval()
    features_parts, predictions_parts = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for images, labels in iterate_batches(split, batch_size):
        stopping.check()
        with autocast(device, precision):
            features, logits = model(normalise(images.to(device), mean, std))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels.to(device), reduction="sum")
        features_parts.append(features.float())
        predictions_parts.append(logits.argmax(1))
    features = torch.cat(features_parts).cpu().numpy()
    predictions = torch.cat(predictions_parts).cpu().numpy()
    labels_np = split.labels.cpu().numpy()
    n = max(len(labels_np), 1)
    return Evaluation(
        features=features,
        predictions=predictions,
        accuracy=float((predictions == labels_np).mean()) if len(labels_np) else math.nan,
        loss_ce=float(loss_sum.item()) / n,
    )


# --- the whole run -----------------------------------------------------------------------------


def next_run_dir(root: Path, prefix: str = "run") -> Path:
    """Claim ``root/<prefix>N`` for the next free N (mkdir is atomic, so parallel runs differ)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [
        int(p.name[len(prefix) :])
        for p in root.iterdir()
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    ]
    number = max(taken, default=0) + 1
    while True:
        candidate = root / f"{prefix}{number}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that cannot take this run; changes nothing.

    A new run goes into a new or empty folder, or replaces a run with ``overwrite``. A folder
    holding anything that is not part of a run (a subfolder, another program's config.json, a
    thesis) is never written into, let alone cleared.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise CLAnalyzeError(f"{run_dir} is a file, not a run folder: pass another --out")
    if not run_dir.exists():
        if resume:
            raise CLAnalyzeError(
                f"--resume {run_dir}: no run there (no such folder): check the path"
            )
        return
    try:
        entries = sorted(run_dir.iterdir())
    except OSError as error:
        raise CLAnalyzeError(
            f"cannot read {run_dir} ({error.strerror}): pick another --out"
        ) from None
    names = {entry.name for entry in entries}
    has_run = bool(names & {STORE_NAME, LAST, BEST}) or any(
        name.startswith("epoch_") and name.endswith(".pt") for name in names
    )
    if resume:
        if not has_run:
            raise CLAnalyzeError(
                f"--resume {run_dir}: no run there (no {STORE_NAME} or {LAST}):"
                " point it at a folder written by `cl-analyze train`"
            )
        return
    foreign = [entry.name for entry in entries if not (entry.is_file() and is_run_file(entry.name))]
    if not has_run and "config.json" in names:
        foreign.append("config.json")  # ours is only ever written beside a store
    if foreign:
        listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CLAnalyzeError(
            f"{run_dir} holds files that are not part of a cl-analyze run ({listed}): a new run"
            " goes into a new or empty folder (or replaces a run with --overwrite); pick"
            " another --out"
        )
    if has_run and not overwrite:
        raise CLAnalyzeError(
            f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to replace"
            " it, or another --out"
        )
    if has_run and (run_dir / STORE_NAME).is_file() and not _is_cl_analyze_store(run_dir):
        raise CLAnalyzeError(
            f"{run_dir / STORE_NAME} is not a cl-analyze run store: --overwrite replaces only a"
            " cl-analyze run; pick another --out"
        )


def _is_cl_analyze_store(run_dir: Path) -> bool:
    """False only for an HDF5 file that opens and is not ours (a damaged one of ours is ours)."""
    import h5py

    try:
        with h5py.File(run_dir / STORE_NAME, "r", locking=False) as handle:
            return handle.attrs.get("format") == FORMAT
    except OSError:
        return True


def _clear_run(run_dir: Path) -> None:
    """Delete the files of the run being replaced: only those (checked again under the lock)."""
    check_run_folder(run_dir, resume=False, overwrite=True)
    for child in run_dir.iterdir():
        if child.name != LOCK_NAME and child.is_file() and is_run_file(child.name):
            child.unlink()


def _configure_determinism(config: TrainConfig) -> None:
    if config.deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        # Switching it off imports torch's compiler stack (seconds): only do it when it is on.
        if torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


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
    with run_lock(run_dir, "train"), stopping.stop_on_signals():
        remove_stale_partials(run_dir)
        if overwrite and not resume:
            _clear_run(run_dir)
        if resume and not (run_dir / LAST).is_file():
            _check_restartable(run_dir)
            reporter.log(f"{run_dir} stopped before its first checkpoint: starting it again")
            resume = False
        return _fit_locked(config, run_dir, dataset, device, resume=resume, reporter=reporter)


def _check_restartable(run_dir: Path) -> None:
    """A run without last.pt restarts from scratch only if nothing trained was stored (it was
    killed before its first checkpoint); otherwise last.pt went missing and that is an error."""
    rows = 0
    if (run_dir / STORE_NAME).is_file():
        with contextlib.suppress(CLAnalyzeError), RunStore(run_dir) as store:
            rows = store.rows
    if rows > 1:
        raise CLAnalyzeError(
            f"{run_dir} stores {rows} epochs but has no {LAST} to resume from: restore {LAST},"
            " or replace the run with --overwrite"
        )


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
    _configure_determinism(config)
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
            writer.close()
            raise CLAnalyzeError(
                f"{store_file} holds {writer.rows} epochs but {LAST} is at epoch"
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
                        for name, s in (("train", dataset.train), ("test", dataset.test))
                    },
                    history_names=HISTORY_NAMES,
                    with_centers=config.loss == "center",
                    evaluated_splits=("train", "test") if config.embed else ("test",),
                    config=config.to_dict(),
                    attrs={"device": str(device), "hardware": hardware_description()},
                )
            )

        _write_or_explain(create, store_file, run_dir, None)
        writer = writers[0]
    reporter.log(f"run folder: {run_dir}  ({dataset.name}, {config.loss} loss, {device})")
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
            dataset.split(name),
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
    }


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

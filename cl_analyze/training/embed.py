"""`cl-analyze embed`: embed a dataset split (or a folder of images) with a trained checkpoint.

Two modes:

- one checkpoint -> a new store of the run-store schema with one row (epoch = the checkpoint's);
- ``all_checkpoints`` -> fill the per-epoch embeddings that a ``--no-embed`` run left out, in
  the run's own ``run.h5``, from its ``epoch_NNN.pt`` checkpoints (``--keep-checkpoints all``).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cl_analyze.atomic import atomic_path
from cl_analyze.config import TrainConfig
from cl_analyze.data import (
    IMAGE_SIZE,
    NORMALISATION,
    Split,
    load_dataset,
    load_image_folder,
    stratified_subset,
)
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.hardware import hardware_description, precision_warning
from cl_analyze.models import LeNetPlusPlus
from cl_analyze.progress import Reporter
from cl_analyze.store import (
    STORE_NAME,
    RunStore,
    RunWriter,
    create_epoch_datasets,
    flagged_open_for_write,
    rebuild,
    remove_stale_partials,
    run_lock,
    store_path,
)
from cl_analyze.training.checkpoints import (
    load_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint,
)
from cl_analyze.training.fit import HISTORY_NAMES, classifier_of, recorded_split
from cl_analyze.training.loop import Evaluation, evaluate, resolve_device

# Batches per progress-bar step: each step is one `evaluate` call.
BATCHES_PER_STEP = 4


@dataclass(frozen=True)
class EmbedConfig:
    """What to embed, with what, and where to write it (None: the run's own setting)."""

    run: Path
    checkpoint: str = "last"
    dataset: str | None = None
    data_dir: str | None = None
    split: str = "test"
    images: Path | None = None
    limit: int | None = None
    out: Path | None = None
    device: str = "auto"
    batch_size: int = 128
    all_checkpoints: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise CLAnalyzeError(f"--batch-size must be > 0, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise CLAnalyzeError(f"--limit must be >= 1, got {self.limit}: or leave it out")
        if self.split not in ("train", "test"):
            raise CLAnalyzeError(f"unknown split {self.split!r}: use train or test")
        if self.all_checkpoints:
            ignored = {
                "--dataset": self.dataset,
                "--images": self.images,
                "--limit": self.limit,
                "--out": self.out,
            }
            given = [flag for flag, value in ignored.items() if value is not None]
            if given:
                raise CLAnalyzeError(
                    f"--all-checkpoints rebuilds the run's own splits in its run.h5:"
                    f" drop {', '.join(given)}"
                )


@dataclass(frozen=True)
class Images:
    """A split to embed and the class names its labels index."""

    name: str
    split: Split
    class_names: tuple[str, ...]
    mean: float
    std: float


def embed(config: EmbedConfig, reporter: Reporter | None = None) -> Path:
    """Run the embed command; returns the store written (or updated)."""
    reporter = reporter or Reporter(quiet=True)
    if not config.run.is_dir():
        raise CLAnalyzeError(
            f"no run folder at {config.run}: pass a folder written by `cl-analyze train`"
        )
    with reporter:
        if config.all_checkpoints:
            return embed_all_checkpoints(config, reporter)
        return embed_checkpoint(config, reporter)


# --- inputs ------------------------------------------------------------------------------------


def _checkpoint_inputs(config: EmbedConfig, payload: dict[str, Any]) -> Images:
    train_config = TrainConfig.from_dict(payload["config"])
    model_classes = tuple(payload["class_names"])
    mean, std = NORMALISATION[train_config.dataset]
    if config.images is not None:
        split, names = load_image_folder(config.images, model_classes)
        split = stratified_subset(split, config.limit)
        return Images(f"images:{config.images.name}", split, names, mean, std)
    name = config.dataset or train_config.dataset
    limit = config.limit
    if limit is None and name == train_config.dataset:
        # The run's own subset, so the rows line up with what it stored.
        limit = train_config.limit_train if config.split == "train" else train_config.limit_test
    dataset = load_dataset(
        name,
        config.data_dir or train_config.data_dir,
        limit_train=limit if config.split == "train" else None,
        limit_test=limit if config.split == "test" else None,
        download=False,
    )
    split = dataset.split(config.split)
    if config.limit is None and name == train_config.dataset:
        split = recorded_split(dataset, train_config, config.split)  # --embed-train-limit's
    # The model's own input normalisation, whatever the dataset: that is what it learned on.
    images = Images(name, split, dataset.class_names, mean, std)
    _check_fits(images, int(payload["num_classes"]))
    return images


def _check_fits(images: Images, num_classes: int) -> None:
    size = tuple(images.split.images.shape[1:])
    if size != IMAGE_SIZE:
        raise CLAnalyzeError(
            f"{images.name} images are {size}, the model takes {IMAGE_SIZE}: embed a 28x28 dataset"
        )
    if len(images.class_names) != num_classes:
        raise CLAnalyzeError(
            f"{images.name} has {len(images.class_names)} classes, the model {num_classes}:"
            " embed a dataset with the classes it was trained on"
        )


# --- the embedding pass ------------------------------------------------------------------------


def embed_split(
    model: LeNetPlusPlus,
    images: Images,
    *,
    batch_size: int,
    precision: str,
    reporter: Reporter,
    description: str,
) -> Evaluation:
    """``train.evaluate`` over the split in slices, so the progress bar moves."""
    device = next(model.parameters()).device
    split = images.split.to(device)
    step = batch_size * BATCHES_PER_STEP
    reporter.start(description, max(1, math.ceil(len(split) / step)))
    parts: list[Evaluation] = []
    for start in range(0, len(split), step):
        part = Split(
            split.images[start : start + step],
            split.labels[start : start + step],
            split.indices[start : start + step],
        )
        parts.append(
            evaluate(
                model, part, images.mean, images.std, batch_size=batch_size, precision=precision
            )
        )
        reporter.advance(1)
    features = np.concatenate([p.features for p in parts])
    predictions = np.concatenate([p.predictions for p in parts])
    labels = split.labels.cpu().numpy()
    weights = [len(p.predictions) for p in parts]
    return Evaluation(
        features=features,
        predictions=predictions,
        accuracy=float((predictions == labels).mean()) if len(labels) else math.nan,
        loss_ce=float(np.average([p.loss_ce for p in parts], weights=weights)),
    )


def _load_model(path: Path, device: torch.device) -> tuple[dict[str, Any], LeNetPlusPlus, str]:
    payload = load_checkpoint(path)
    model, train_config = model_from_checkpoint(payload)
    return payload, model.to(device), train_config.precision


def _centers(payload: dict[str, Any]) -> np.ndarray | None:
    state = payload.get("center_loss")
    if not state:
        return None
    return state["centers"].detach().float().cpu().numpy()


def _scalars(split: str, evaluation: Evaluation, seconds: float) -> dict[str, float]:
    scalars = {"embed_time_s": seconds}
    if split == "test":
        scalars.update(test_accuracy=evaluation.accuracy, test_loss_ce=evaluation.loss_ce)
    else:
        scalars["train_accuracy_eval"] = evaluation.accuracy
    return scalars


def embed_checkpoint(config: EmbedConfig, reporter: Reporter) -> Path:
    """One checkpoint, one split -> a new one-row store."""
    checkpoint = resolve_checkpoint(config.run, config.checkpoint)
    device = resolve_device(config.device)
    payload, model, precision = _load_model(checkpoint, device)
    images = _checkpoint_inputs(config, payload)
    warning = precision_warning(precision, device)
    if warning is not None:
        reporter.log(warning)
    if config.images is not None and images.class_names != tuple(payload["class_names"]):
        reporter.log(
            f"note: the class folders of {config.images} are not the model's classes: folder i"
            " (in sorted order) is labelled class i, and the stored accuracy compares it with"
            " the model's class i"
        )
    epoch = int(payload["epoch"])
    split_name = "test" if config.images is not None else config.split
    out = config.out or config.run / f"embed-{_slug(images.name)}-{split_name}-epoch{epoch}.h5"
    out = store_path(out)
    if out.exists():
        raise CLAnalyzeError(f"{out} already exists: delete it or pass another --out")
    if out.name == STORE_NAME:
        raise CLAnalyzeError(f"--out {out} would replace a run's store: pick another file name")
    start = time.perf_counter()
    evaluation = embed_split(
        model,
        images,
        batch_size=config.batch_size,
        precision=precision,
        reporter=reporter,
        description=f"embed {split_name} (epoch {epoch})",
    )
    seconds = time.perf_counter() - start
    centers = _centers(payload)
    # Written whole under a temporary name: a kill never leaves a store that looks complete.
    with atomic_path(out) as temporary:
        writer = RunWriter.create(
            temporary,
            dataset=images.name,
            class_names=images.class_names,
            feat_dim=model.feat_dim,
            splits={
                split_name: (
                    images.split.labels.cpu().numpy(),
                    images.split.indices.cpu().numpy(),
                )
            },
            history_names=HISTORY_NAMES,
            with_centers=centers is not None,
            with_classifier=True,
            config=payload["config"],
            attrs={
                "device": str(device),
                "hardware": hardware_description(),
                "precision": precision,
                "embedded_from": str(checkpoint),
            },
        )
        with writer:
            writer.append_epoch(
                epoch,
                scalars=_scalars(split_name, evaluation, seconds),
                features={split_name: evaluation.features},
                predictions={split_name: evaluation.predictions},
                centers=centers,
                classifier=classifier_of(model),
            )
    reporter.log(f"embedded {len(evaluation.predictions)} {split_name} images -> {out}")
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


# --- every checkpoint of a --no-embed run ------------------------------------------------------


def embed_all_checkpoints(config: EmbedConfig, reporter: Reporter) -> Path:
    """Fill every split that lacks per-epoch features, row by row, from epoch checkpoints."""
    with run_lock(config.run, "embed"):
        return _embed_all_checkpoints_locked(config, reporter)


def _embed_all_checkpoints_locked(config: EmbedConfig, reporter: Reporter) -> Path:
    run = config.run
    path = run / STORE_NAME
    with RunStore(path) as store:
        epochs = [int(e) for e in store.epochs.tolist()]
        missing = [s for s in store.splits if not store.has_features(s)]
        stored = {s: (store.labels(s), store.indices(s)) for s in missing}
        feat_dim = store.feat_dim
    if not missing:
        reporter.log(f"{path} already holds every split's embeddings: nothing to do")
        return path
    checkpoints = [resolve_checkpoint(run, str(epoch)) for epoch in epochs]
    device = resolve_device(config.device)
    payload = load_checkpoint(checkpoints[-1])
    train_config = TrainConfig.from_dict(payload["config"])
    dataset = load_dataset(
        train_config.dataset,
        config.data_dir or train_config.data_dir,
        limit_train=train_config.limit_train,
        limit_test=train_config.limit_test,
        download=False,
    )
    recorded = {split: recorded_split(dataset, train_config, split) for split in missing}
    for split in missing:
        labels, indices = stored[split]
        if not np.array_equal(recorded[split].indices.numpy(), indices) or not (
            np.array_equal(recorded[split].labels.numpy(), labels)
        ):
            raise CLAnalyzeError(
                f"the {split} split of {train_config.dataset} differs from the one {run} was"
                " trained on: pass the --data-dir it was trained with"
            )
    remove_stale_partials(run)
    if flagged_open_for_write(path):
        rebuild(path)  # a killed trainer's flag refuses the read-write open below
    # HDF5 has no journal: a kill while metadata is rewritten can ruin the file. Work on a copy
    # and swap it in atomically, so the trained epochs are never at risk.
    with atomic_path(path) as working:
        shutil.copyfile(path, working)
        with h5py.File(working, "r+") as handle:
            for split in missing:
                create_epoch_datasets(handle[split], len(stored[split][0]), feat_dim, len(epochs))
            for row, (epoch, checkpoint) in enumerate(zip(epochs, checkpoints, strict=True)):
                _, model, precision = _load_model(checkpoint, device)
                for split in missing:
                    images = Images(
                        dataset.name,
                        recorded[split],
                        dataset.class_names,
                        dataset.mean,
                        dataset.std,
                    )
                    evaluation = embed_split(
                        model,
                        images,
                        batch_size=config.batch_size,
                        precision=precision,
                        reporter=reporter,
                        description=f"embed {split} epoch {epoch} ({row + 1}/{len(epochs)})",
                    )
                    group = handle[split]
                    group["features"][row] = evaluation.features
                    group["predictions"][row] = evaluation.predictions
                    if split == "train" and "train_accuracy_eval" in handle["history"]:
                        handle["history/train_accuracy_eval"][row] = evaluation.accuracy
                handle.flush()
            # Cached metrics were computed without these splits.
            if "metrics" in handle:
                del handle["metrics"]
    reporter.log(f"embedded {', '.join(missing)} for {len(epochs)} epochs into {path}")
    return path

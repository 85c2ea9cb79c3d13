"""What an export holds, whatever the target: the run's scalars by tag, the chosen epochs, each
chosen epoch's points with their metadata and digit images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cl_analyze.data import load_dataset
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings.decline import peak_and_decline
from cl_analyze.metrics import load_metrics
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore

EXPORT_TARGETS = ("tensorboard", "wandb")
EPOCH_WORDS = ("first", "peak", "last", "all")
DEFAULT_EPOCHS = ("first", "peak", "last")
METADATA_HEADER = ("label", "prediction", "correct")


@dataclass(frozen=True)
class ExportOptions:
    target: str = "tensorboard"
    out: Path | None = None
    epochs: tuple[str | int, ...] = DEFAULT_EPOCHS
    split: str = "test"
    sprite: bool = True  # digit images on the projector's points
    data_dir: Path | None = None  # where the digits are; default the run's own
    metrics: bool = True
    figures: bool = True  # wandb: the report's figures
    max_points: int | None = None  # projector points per epoch (stratified); None: all

    def __post_init__(self) -> None:
        if self.target not in EXPORT_TARGETS:
            raise CLAnalyzeError(
                f"--to {self.target!r}: export to one of {', '.join(EXPORT_TARGETS)}"
            )
        if self.max_points is not None and self.max_points < 1:
            raise CLAnalyzeError(f"--max-points must be >= 1, got {self.max_points}")


def parse_export_epochs(text: str | None) -> tuple[str | int, ...]:
    """``"first,peak,last"`` (the default), ``"all"``, or epoch numbers mixed with the words."""
    if text is None or not text.strip():
        return DEFAULT_EPOCHS
    specs: list[str | int] = []
    for part in (p.strip() for p in text.split(",")):
        if part in EPOCH_WORDS:
            specs.append(part)
        elif part.isdigit():
            specs.append(int(part))
        else:
            raise CLAnalyzeError(
                f"--epochs: {part!r} is not an epoch: give numbers or {', '.join(EPOCH_WORDS)}"
            )
    return tuple(specs)


def chosen_epochs(store: RunStore, specs: tuple[str | int, ...]) -> list[int]:
    """The epoch numbers ``specs`` name, in order, each once; ``peak`` is the report's peak
    (the first epoch of highest test accuracy)."""
    epochs = [int(e) for e in store.epochs.tolist()]
    if not epochs:
        raise CLAnalyzeError(f"{store.path} has no complete epoch yet: export it after epoch 0")
    chosen: list[int] = []
    for spec in specs:
        if spec == "all":
            chosen.extend(epochs)
        elif spec == "first":
            chosen.append(epochs[0])
        elif spec == "last":
            chosen.append(epochs[-1])
        elif spec == "peak":
            accuracy = store.history.get("test_accuracy")
            if accuracy is None or not np.isfinite(accuracy).any():
                chosen.append(epochs[-1])  # no accuracy recorded: nothing peaks
            else:
                chosen.append(peak_and_decline(store.epochs, accuracy).peak_epoch)
        elif int(spec) in epochs:
            chosen.append(int(spec))
        else:
            raise CLAnalyzeError(
                f"epoch {spec} is not in {store.path} ({epochs[0]}..{epochs[-1]}):"
                " pick a completed epoch, first, peak, last or all"
            )
    return sorted(set(chosen))


def run_scalars(
    run: Path, *, metrics: bool = True, reporter: Reporter | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (epochs, values): every ``/history`` scalar as ``history/<name>`` and, with
    ``metrics``, every cached metric as ``metrics/<split>/<metric>`` (whole split) or
    ``metrics/<split>/<metric>/<class>``. NaN values (a scalar not recorded that epoch) are
    left out."""
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with RunStore(run) as store:
        epochs = store.epochs.astype(np.int64)
        for name, values in sorted(store.history.items()):
            keep = np.isfinite(values)
            series[f"history/{name}"] = (epochs[keep], np.asarray(values, dtype=np.float64)[keep])
        rows = store.rows
    if metrics:
        frame = load_metrics(run, reporter=reporter, rows=rows)
        tags = "metrics/" + frame["split"] + "/" + frame["metric"]
        tags = tags.where(frame["class"] == "", tags + "/" + frame["class"])
        for tag, group in frame.assign(tag=tags).groupby("tag", sort=True):
            group = group.sort_values("epoch")
            series[str(tag)] = (
                group["epoch"].to_numpy(np.int64),
                group["value"].to_numpy(np.float64),
            )
    return series


@dataclass(frozen=True)
class EpochPoints:
    """One epoch of one split: features (N, D), and per point its label, prediction, whether
    it is correct, and its row in the split (``rows``, to pick its image)."""

    epoch: int
    features: np.ndarray
    labels: list[str]
    predictions: list[str]
    correct: np.ndarray
    rows: np.ndarray

    def metadata(self) -> list[list[str]]:
        return [
            [label, prediction, str(bool(ok))]
            for label, prediction, ok in zip(
                self.labels, self.predictions, self.correct, strict=True
            )
        ]

    def frame(self) -> pd.DataFrame:
        columns = {f"f{d}": self.features[:, d] for d in range(self.features.shape[1])}
        return pd.DataFrame(
            {
                "label": self.labels,
                "prediction": self.predictions,
                "correct": self.correct,
                **columns,
            }
        )


def sample_rows(labels: np.ndarray, most: int | None) -> np.ndarray:
    """All rows, or ``most`` of them stratified by class (deterministic: evenly spaced)."""
    if most is None or most >= len(labels):
        return np.arange(len(labels))
    picked: list[np.ndarray] = []
    classes = np.unique(labels)
    for k in classes:
        members = np.flatnonzero(labels == k)
        share = max(1, math.floor(most * len(members) / len(labels)))
        picked.append(
            members[np.linspace(0, len(members) - 1, min(share, len(members))).astype(int)]
        )
    return np.sort(np.concatenate(picked))


def projector_points(
    store: RunStore, split: str, epoch: int, rows: np.ndarray | None = None
) -> EpochPoints:
    row = int(np.flatnonzero(store.epochs == epoch)[0])
    labels = store.labels(split)
    picked = np.arange(len(labels)) if rows is None else rows
    predictions = store.predictions(split, row)[picked]
    names = np.asarray(store.class_names, dtype=object)
    return EpochPoints(
        epoch=epoch,
        features=store.features(split, row)[picked],
        labels=[str(n) for n in names[labels[picked]]],
        predictions=[str(n) for n in names[predictions]],
        correct=predictions == labels[picked],
        rows=picked,
    )


def digit_images(store: RunStore, split: str, data_dir: Path | None) -> np.ndarray:
    """(N, H, W) uint8 images of the split's stored samples, in the store's order, loaded
    offline from the run's dataset."""
    folder = data_dir if data_dir is not None else Path(str(store.config.get("data_dir", "data")))
    name = store.dataset
    if name.startswith("images:"):
        raise CLAnalyzeError(
            f"{store.path} embeds an image folder ({name}): export it with --no-sprite"
        )
    try:
        dataset = load_dataset(name, folder, download=False)
    except CLAnalyzeError as error:
        raise CLAnalyzeError(
            f"the digit images for the projector's sprite: {error}; or pass --no-sprite"
        ) from None
    source = dataset.split(split)
    source_indices = source.indices.numpy()
    wanted = store.indices(split)
    order = np.argsort(source_indices)
    found = np.clip(np.searchsorted(source_indices, wanted, sorter=order), 0, len(order) - 1)
    positions = order[found]
    if not np.array_equal(source_indices[positions], wanted):
        raise CLAnalyzeError(
            f"{name}'s {split} split in {folder} lacks samples the run stored: point --data-dir"
            " at the run's data, or pass --no-sprite"
        )
    return source.images.numpy()[positions]

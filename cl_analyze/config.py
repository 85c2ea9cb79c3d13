"""The frozen configuration of a training run, its defaults (the reference's) and its checks."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from cl_analyze.errors import CLAnalyzeError

# The choices of a run live here, free of torch, so `cl-analyze --help` and completion start fast.
DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
CenterUpdate = Literal["sgd", "paper"]
CENTER_UPDATES: tuple[CenterUpdate, ...] = ("sgd", "paper")
LOSSES = ("softmax", "center")
# auto: bf16 where the hardware runs it natively, fp32 elsewhere (cl_analyze.hardware).
PRECISIONS = ("auto", "fp32", "bf16")
KEEP_CHECKPOINTS = ("last", "all")
# Options that may change when a run is resumed: they do not alter what was already trained.
RESUME_OVERRIDABLE = frozenset({"epochs", "device", "keep_checkpoints", "data_dir", "download"})
# Where the data lives and what runs the code: set per machine (CL_ANALYZE_DATA, _DEVICE).
MACHINE_OPTIONS = frozenset({"data_dir", "download", "device"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are KaiyangZhou/pytorch-center-loss's."""

    loss: str = "center"
    dataset: str = "mnist"
    data_dir: str = "data"
    download: bool = True
    limit_train: int | None = None
    limit_test: int | None = None
    feat_dim: int = 2
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.5
    center_weight: float = 1.0
    center_lr: float = 0.5
    center_update: str = "sgd"
    alpha: float = 0.5
    seed: int = 1
    device: str = "auto"
    deterministic: bool = False
    precision: str = "auto"
    embed: bool = True
    embed_train_limit: int | None = None
    # 128, not 1024: activations stay in cache, 1.3-1.6x faster on CPU (benchmarks/RESULTS.md).
    eval_batch_size: int = 128
    keep_checkpoints: str = "last"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            # NaN slips through every comparison below (nan < 0 and nan <= 0 are both False).
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + field.name.replace("_", "-")
                raise CLAnalyzeError(f"{flag} must be a finite number, got {value}")
        _choice("loss", self.loss, LOSSES)
        _choice("dataset", self.dataset, DATASETS)
        _choice("center-update", self.center_update, CENTER_UPDATES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("keep-checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise CLAnalyzeError(f"unknown device {self.device!r}: use auto, cpu, cuda or cuda:N")
        _positive("epochs", self.epochs)
        _positive("batch-size", self.batch_size)
        _positive("eval-batch-size", self.eval_batch_size)
        _positive("lr", self.lr)
        _positive("center-lr", self.center_lr)
        _positive("alpha", self.alpha)
        _positive("gamma", self.gamma)
        _positive("step-size", self.step_size)
        if self.feat_dim < 1:
            raise CLAnalyzeError(f"--feat-dim must be >= 1, got {self.feat_dim}: use 2 to plot it")
        if not 0 <= self.momentum < 1:
            raise CLAnalyzeError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise CLAnalyzeError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.loss == "center" and self.center_weight <= 0:
            raise CLAnalyzeError(
                f"--center-weight must be > 0 with --loss center, got {self.center_weight}:"
                " use --loss softmax to train without center loss"
            )
        for name, limit in (("limit-train", self.limit_train), ("limit-test", self.limit_test)):
            if limit is not None and limit < 1:
                raise CLAnalyzeError(f"--{name} must be >= 1, got {limit}: or leave it out")
        if self.embed_train_limit is not None and self.embed_train_limit < 1:
            raise CLAnalyzeError(
                f"--embed-train-limit must be >= 1, got {self.embed_train_limit}:"
                " or leave it out to embed the whole train split"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def command_line(self) -> str:
        """The `cl-analyze train` command that trains this config again.

        Every option is written out, so a default changed by a later version cannot change the
        rerun; the per-machine ones (data folder, download, device) are left to the machine."""
        words = ["cl-analyze", "train"]
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in MACHINE_OPTIONS or value is None:
                continue
            flag = field.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                words += [f"--{flag}", shlex.quote(str(value))]
        return " ".join(words)

    def merge_for_resume(self, given: dict[str, Any]) -> TrainConfig:
        """This (stored) config with the options given on a resume; a contradiction is an error."""
        for name, value in given.items():
            if name in RESUME_OVERRIDABLE or value == getattr(self, name):
                continue
            if name == "precision" and value == "auto":
                continue  # the stored precision is what auto resolved to when the run began
            flag = "--" + name.replace("_", "-")
            raise CLAnalyzeError(
                f"{flag} {value} contradicts the run being resumed ({name}={getattr(self, name)}):"
                f" drop {flag}, or start a new run with --out or --overwrite"
            )
        overrides = {k: v for k, v in given.items() if k in RESUME_OVERRIDABLE}
        return self.replace(**overrides)


def command_line_of(stored: Mapping[str, Any]) -> str | None:
    """The rerun command of a stored run config; None when it is not a TrainConfig's (a store
    that ``RunWriter`` wrote for another model's embeddings)."""
    names = {field.name for field in fields(TrainConfig)}
    if not stored or not set(stored) <= names:
        return None
    try:
        return TrainConfig(**stored).command_line()
    except (CLAnalyzeError, TypeError):
        return None


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise CLAnalyzeError(f"unknown {flag} {value!r}: use one of {', '.join(choices)}")


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise CLAnalyzeError(f"--{flag} must be > 0, got {value}")

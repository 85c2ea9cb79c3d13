"""One epoch of training and one evaluation pass, split as torchvision's reference does."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cl_analyze.config import TrainConfig
from cl_analyze.data import Dataset, Split, iterate_batches, normalise
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.losses import CenterLoss
from cl_analyze.models import LeNetPlusPlus
from cl_analyze.progress import Reporter
from cl_analyze.training import stopping

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


def mixed_forward(
    model: LeNetPlusPlus, inputs: torch.Tensor, precision: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)``, both float32. With bf16 only the convolutions run under autocast
    (where the speed is); the feature layer and the classifier run in fp32, so the stored
    features, predictions and centers are not bf16-rounded (a bf16 feature layer gave 400 test
    images 78 distinct values)."""
    with autocast(inputs.device, precision):
        hidden = model.trunk(inputs)
    return model.head(hidden.float())


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
        features, logits = mixed_forward(model, inputs, config.precision)
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
    model: LeNetPlusPlus,
    split: Split,
    mean: float,
    std: float,
    *,
    batch_size: int = 128,
    precision: str = "fp32",
) -> Evaluation:
    """Embed a whole split in eval mode: features, predicted classes, accuracy, cross-entropy."""
    device = next(model.parameters()).device
    model.eval()
    features_parts, predictions_parts = [], []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    for images, labels in iterate_batches(split, batch_size):
        stopping.check()
        batch_features, logits = mixed_forward(
            model, normalise(images.to(device), mean, std), precision
        )
        loss_sum += F.cross_entropy(logits, labels.to(device), reduction="sum")
        features_parts.append(batch_features)
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

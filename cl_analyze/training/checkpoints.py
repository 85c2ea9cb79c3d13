"""Checkpoints that carry their config and load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cl_analyze.atomic import atomic_path
from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.models import LeNetPlusPlus

FORMAT = "cl-analyze-checkpoint"
LAST = "last.pt"
BEST = "best.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash or a full disk mid-save leaves the previous checkpoint intact
    (torch reports a failed write as a RuntimeError, the filesystem as an OSError)."""
    with atomic_path(path) as temporary:
        torch.save({"format": FORMAT, **payload}, temporary)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CLAnalyzeError(f"no checkpoint at {path}: train the run first, or pick another one")
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else (garbage, a cut file) would reach the
        # legacy unpickler, whose errors on junk are arbitrary (KeyError, IndexError, ...).
        raise CLAnalyzeError(
            f"cannot read checkpoint {path} (not a complete torch archive): the file is damaged"
            " or not from cl-analyze; use another checkpoint"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses any object beyond tensors and plain containers: code could run.
        raise CLAnalyzeError(
            f"{path} is not a cl-analyze checkpoint, or not safe to load (torch refused to"
            " unpickle it; only tensors and plain values load): use one written by"
            " `cl-analyze train`"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
        raise CLAnalyzeError(
            f"cannot read checkpoint {path} ({reason}): the file is damaged or not from"
            " cl-analyze; use another checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CLAnalyzeError(f"{path} is not a cl-analyze checkpoint: pick one from a run folder")
    return payload


def resolve_checkpoint(run_dir: Path, which: str) -> Path:
    """``last``, ``best`` or an epoch number -> the checkpoint file in a run folder."""
    if which in ("last", "best"):
        return run_dir / (LAST if which == "last" else BEST)
    try:
        epoch = int(which)
    except ValueError:
        raise CLAnalyzeError(
            f"unknown checkpoint {which!r}: use last, best or an epoch number"
        ) from None
    path = run_dir / epoch_checkpoint_name(epoch)
    if not path.is_file():
        last = run_dir / LAST
        if last.is_file() and load_checkpoint(last)["epoch"] == epoch:
            return last
        raise CLAnalyzeError(
            f"no checkpoint for epoch {epoch} in {run_dir}: train with --keep-checkpoints all"
            " to keep every epoch, or use last or best"
        )
    return path


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[LeNetPlusPlus, TrainConfig]:
    config = TrainConfig.from_dict(payload["config"])
    model = LeNetPlusPlus(num_classes=int(payload["num_classes"]), feat_dim=config.feat_dim)
    model.load_state_dict(payload["model"])
    return model, config

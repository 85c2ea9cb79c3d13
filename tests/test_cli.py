"""`cl-analyze train` from the command line: a full small run, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_main

from cl_analyze.store import RunStore


@pytest.mark.slow  # 512 images x 2 epochs; fast: tests/training/test_train_command.py
def test_cli_two_epoch_run_yields_a_complete_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(
        monkeypatch,
        capsys,
        "train",
        "--dataset",
        "mnist-5k",
        "--limit-train",
        "512",
        "--limit-test",
        "100",
        "--epochs",
        "2",
        "--loss",
        "center",
        "--quiet",
        "--deterministic",
    )
    assert code in (0, None)
    run = tmp_path / "artifacts" / "run1"
    assert "artifacts/run1" in err
    with RunStore(run) as store:
        assert store.rows == 3 and store.attrs["epochs_complete"] == 3
        assert store.features("train").shape == (3, 512, 2)
        assert store.config["limit_train"] == 512 and store.config["loss"] == "center"
    assert json.loads((run / "config.json").read_text()) == store.config
    assert torch.load(run / "last.pt", weights_only=True)["config"] == store.config


BAD_INPUT = [
    (["--dataset", "cifar"], "'cifar' is not one of mnist-5k, mnist, fashion-mnist"),
    (["--loss", "triplet"], "'triplet' is not one of softmax, center"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--center-update", "adam"], "'adam' is not one of sgd, paper"),
    (["--loss", "centre"], "did you mean 'center'?"),
    (["--epochs", "ten"], "Invalid value for '--epochs'"),
    (["--bogus"], "No such option: --bogus"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--batch-size", "-1"], "--batch-size must be > 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--feat-dim", "0"], "--feat-dim must be >= 1"),
    (["--loss", "center", "--center-weight", "0"], "use --loss softmax"),
    (["--resume", "nowhere"], "no run there"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_nonzero(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(monkeypatch, capsys, "train", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not any((tmp_path / "artifacts").glob("run*"))  # nothing left behind


def test_missing_mnist_offline_names_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(
        monkeypatch, capsys, "train", "--dataset", "mnist", "--data-dir", "nowhere", "--no-download"
    )
    assert code == 2 and "t10k-labels-idx1-ubyte" in err and "nowhere" in err
    assert err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_asked_for_and_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(monkeypatch, capsys, "train", "--dataset", "mnist-5k", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err


def test_resume_with_contradicting_option(
    center_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(monkeypatch, capsys, "train", "--resume", str(center_run), "--seed", "5")
    assert code == 2 and "--seed 5 contradicts the run being resumed" in err


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cl_analyze", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train",):
        assert command in result.stdout


def test_overwrite_with_bad_input_keeps_the_old_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import tiny_config

    from cl_analyze.training.fit import fit

    run = tmp_path / "run"
    fit(tiny_config(loss="softmax", epochs=1, limit_train=64, limit_test=20), run)
    before = sorted(p.name for p in run.iterdir())
    code, err = run_main(
        monkeypatch,
        capsys,
        "train",
        "--out",
        str(run),
        "--overwrite",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--no-download",
    )
    assert code == 2 and "not found" in err
    assert sorted(p.name for p in run.iterdir()) == before
    with RunStore(run) as store:
        assert store.rows == 2


def test_out_pointing_at_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    code, err = run_main(
        monkeypatch, capsys, "train", "--dataset", "mnist-5k", "--out", str(tmp_path / "file")
    )
    assert code == 2 and "is a file" in err

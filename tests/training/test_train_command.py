"""`cl-analyze train` through its console entry point, in-process: a run, Ctrl-C and SIGTERM,
--overwrite of a real run. (tests/test_cli.py runs the same in a larger, slower setting.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import run_main

from cl_analyze.store import RunStore
from cl_analyze.training.checkpoints import load_checkpoint

SMALL = ["--dataset", "mnist-5k", "--limit-train", "48", "--limit-test", "32", "--lr", "0.01"]
SMALL += ["--device", "cpu", "--quiet", "--deterministic"]


def test_train_writes_a_complete_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_main(monkeypatch, capsys, "train", *SMALL, "--epochs", "1", "--loss", "center")
    assert code in (0, None), err
    run = tmp_path / "artifacts" / "run1"  # the first free runN
    assert f"done: {Path('artifacts') / 'run1' / 'run.h5'}" in err
    with RunStore(run) as store:
        assert store.rows == 2 and store.features("train").shape == (2, 48, 2)
        assert store.config["limit_train"] == 48 and store.config["loss"] == "center"
        config = store.config
    assert json.loads((run / "config.json").read_text()) == config
    assert torch.load(run / "last.pt", weights_only=True)["config"] == config


def saved_words(trained_epochs: int) -> str:
    """How the stop message names what is saved, written out from the README's wording."""
    if trained_epochs == 0:
        return "no trained epoch is saved yet"
    if trained_epochs == 1:
        return "1 trained epoch is saved"
    return f"{trained_epochs} trained epochs are saved"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_train_with_exit_130_and_says_what_is_saved(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signal_number: int,
) -> None:
    run = tmp_path / "run"

    def signal_once_epoch_0_is_saved() -> None:
        deadline = time.monotonic() + 300
        while not (run / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal_number)  # as Ctrl-C or `kill` would, to this process

    # Until train installs its own handler (and after it restores this one), a signal is ignored.
    previous = signal.signal(signal_number, signal.SIG_IGN)
    sender = threading.Thread(target=signal_once_epoch_0_is_saved, daemon=True)
    try:
        sender.start()
        code, err = run_main(
            monkeypatch, capsys, "train", *SMALL, "--epochs", "40", "--batch-size", "16",
            "--out", str(run),
        )  # fmt: skip
        sender.join()
    finally:
        signal.signal(signal_number, previous)
    assert code == 130, err
    assert "Traceback" not in err and not (run / "run.lock").exists()
    with RunStore(run) as store:
        rows = store.rows
    assert 1 <= rows < 41  # stopped long before the end
    assert load_checkpoint(run / "last.pt")["epoch"] == rows - 1  # a resume goes on from there
    name = signal.Signals(signal_number).name
    line = err.strip().splitlines()[-1]
    assert line == (
        f"stopped ({name}): {saved_words(rows - 1)} in {run}; continue with"
        f" `cl-analyze train --resume {run}`"
    )


def test_overwrite_replaces_a_real_run(
    center_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    code, err = run_main(
        monkeypatch, capsys, "train", *SMALL, "--epochs", "1", "--loss", "softmax",
        "--out", str(run), "--overwrite",
    )  # fmt: skip
    assert code in (0, None), err
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "run.h5"]
    with RunStore(run) as store:
        assert store.rows == 2 and store.config["loss"] == "softmax" and not store.has_centers
        assert store.features("train").shape == (2, 48, 2)  # the new run's, not the old 64

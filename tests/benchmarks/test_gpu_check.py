"""benchmarks/gpu_check.sh: its smoke mode end to end (slow), and its parts on tiny runs."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import tiny_config

from benchmarks import gpu_check
from cl_analyze import data
from cl_analyze.progress import Reporter
from cl_analyze.training.fit import fit
from cl_analyze.training.stopping import TrainingStopped

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
# Half a unit of the last printed digit (0.01), and float rounding of the halfway case.
HALF_DIGIT = 0.005 + 1e-9


def store_numbers(run_dir: Path) -> dict[str, float]:
    """A run's numbers read with plain h5py, independently of cl_analyze's reader."""
    with h5py.File(run_dir / "run.h5", "r") as handle:
        rows = int(handle.attrs["epochs_complete"])
        accuracy = handle["history/test_accuracy"][:rows]
        elapsed = handle["history/elapsed_s"][:rows]
        train_s = handle["history/train_time_s"][1:rows]
        embed_s = handle["history/embed_time_s"][1:rows]
        embedded = sum(len(handle[f"{split}/labels"]) for split in ("train", "test"))
        epochs = handle["epochs"][:rows]
    return {
        "epochs": float(epochs[-1]),
        "final": 100 * float(accuracy[-1]),
        "peak": 100 * float(accuracy.max()),
        "peak_epoch": float(epochs[int(np.argmax(accuracy))]),
        "embedded": float(embedded),
        "epoch_s": float((elapsed[-1] - elapsed[0]) / (rows - 1)),
        "clock_s": float(elapsed[-1]),
        "train_s": float(np.mean(train_s)),
        "embed_s": float(np.mean(embed_s)),
    }


def markdown_row(markdown: str, run: str) -> list[str]:
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {run} |")]
    assert len(rows) == 1, markdown
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def assert_row_matches_store(markdown: str, run_dir: Path) -> None:
    cells = markdown_row(markdown, run_dir.name)
    numbers = store_numbers(run_dir)
    assert int(cells[1]) == numbers["epochs"]
    assert float(cells[2].rstrip("%")) == pytest.approx(numbers["final"], abs=HALF_DIGIT)
    assert float(cells[3].rstrip("%")) == pytest.approx(numbers["peak"], abs=HALF_DIGIT)
    assert int(cells[4]) == numbers["peak_epoch"]
    assert int(cells[5]) == numbers["embedded"]
    assert float(cells[6]) == pytest.approx(numbers["epoch_s"], abs=HALF_DIGIT)
    assert float(cells[9]) == pytest.approx(numbers["clock_s"], abs=10 * HALF_DIGIT)
    rest = numbers["epoch_s"] - numbers["train_s"] - numbers["embed_s"]
    assert float(cells[10]) == pytest.approx(rest, abs=HALF_DIGIT)


def test_results_md_states_what_the_stores_hold(center_run: Path, softmax_run: Path) -> None:
    results = gpu_check.Results(mode="smoke, CPU")
    results.runs = [gpu_check.summarise_run(run) for run in (softmax_run, center_run)]
    markdown = gpu_check.render_markdown(results)
    for run in (softmax_run, center_run):
        assert_row_matches_store(markdown, run)


def test_plan_fits_both_runs_and_the_report_in_the_budget() -> None:
    epoch_s, startup_s, probe = 0.4, 3.0, 3
    center_s = epoch_s * gpu_check.CENTER_COST_FACTOR

    def needed(epochs: int) -> float:  # softmax's remaining epochs, all of center's, 2 starts
        report = gpu_check.REPORT_FIXED_S + gpu_check.REPORT_PER_EPOCH_S * 2 * (epochs + 1)
        return (epochs - probe) * epoch_s + (epochs + 1) * center_s + 2 * startup_s + report

    for budget in (needed(40) + 0.01, needed(77) - 0.01, needed(100) + 1.0, 1.0):
        planned = gpu_check.plan_epochs(100, probe, epoch_s, budget, startup_s)
        expected = max([probe] + [e for e in range(probe, 101) if needed(e) <= budget])
        assert planned == expected
    assert gpu_check.plan_epochs(100, probe, epoch_s, needed(40) + 0.01, startup_s) == 40
    assert gpu_check.plan_epochs(100, probe, epoch_s, needed(77) - 0.01, startup_s) == 76
    assert gpu_check.plan_epochs(100, probe, epoch_s, 1e6, startup_s) == 100
    assert gpu_check.plan_epochs(100, probe, epoch_s, 1.0, startup_s) == probe


class DueAfterEpoch(Reporter):
    """Moves a watchdog's deadline to now once a given epoch's line is logged."""

    def __init__(self, watchdog: gpu_check.Deadline, epoch: int) -> None:
        super().__init__(quiet=True)
        self.watchdog, self.epoch = watchdog, epoch

    def log(self, message: str) -> None:
        super().log(message)
        if message.startswith(f"epoch {self.epoch:>3}/"):
            self.watchdog.at = time.monotonic()


def test_deadline_stops_training_at_a_batch_and_keeps_the_saved_epochs(tmp_path: Path) -> None:
    watchdog = gpu_check.Deadline(math.inf)
    with pytest.raises(TrainingStopped) as stopped, watchdog.armed():
        fit(
            tiny_config(loss="center", epochs=50),
            tmp_path / "run",
            reporter=DueAfterEpoch(watchdog, 1),
        )
    assert watchdog.fired and stopped.value.signal_name == "SIGTERM"
    # Due once epoch 1 is saved; the signal lands within 0.2 s, in epoch 2 or just after it.
    assert stopped.value.saved_epoch in (1, 2)
    assert store_numbers(tmp_path / "run")["epochs"] == stopped.value.saved_epoch


def test_missing_data_is_one_line_naming_the_fix_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    out = tmp_path / "out"
    code = gpu_check.main(["--smoke", "--data-dir", str(tmp_path / "data"), str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "fashion-mnist" in err and "carry" in err and "cp " in err
    assert not out.exists()


def test_a_folder_with_files_is_never_written_into(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert gpu_check.main(["--smoke", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert gpu_check.main(["--smoke", "--budget-s", "0", str(tmp_path / "new")]) == 2
    assert gpu_check.main(["--smoke", "--no-such-option", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 2 and "--budget-s must be > 0" in err


@pytest.mark.slow  # a minute or more on a loaded 2-core CPU: bench, two runs, a report
def test_smoke_mode_writes_results_that_agree_with_its_stores(tmp_path: Path) -> None:
    if data.find_idx_folder("fashion-mnist", REPO / "data") is None:
        pytest.skip("Fashion-MNIST is not here: apt-get install dataset-fashion-mnist")
    out = tmp_path / "gpu-check"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--smoke", str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    markdown = (out / "results.md").read_text()
    assert (out / "report" / "index.html").is_file() and (out / "report.tar.gz").is_file()
    assert (out / "gpu-check.log").read_text().count("[gpu-check]") >= 8
    for run in ("softmax", "center"):
        assert_row_matches_store(markdown, out / run)
        assert store_numbers(out / run)["epochs"] == 2
    phases = re.findall(r"^\| ([^|*]+?) \| [\d.]+ \| (\w+) \|", markdown, flags=re.MULTILINE)
    assert [name for name, _ in phases][:2] == ["pytest -m gpu", "training benchmark"]
    assert [status for _, status in phases] == ["skipped", "ok", "ok", "ok", "skipped"]
    ratio = re.search(r"\| cl-analyze `train_one_epoch`, fp32 \| [\d,]+ \| ([\d.]+)x \|", markdown)
    assert ratio is not None and float(ratio.group(1)) > 0

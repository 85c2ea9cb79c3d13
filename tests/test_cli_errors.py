"""Every command's bad input is one line on stderr and exit code 2, and creates nothing; every
command's --help lists all its options."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from cl_analyze import cli

COMMANDS = ("train", "embed", "plot", "report", "sweep")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_idx_folder(folder: Path, image_shape: tuple[int, ...]) -> None:
    """An MNIST-named IDX folder whose images have ``image_shape`` (28x28 is MNIST's)."""
    folder.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.zeros((n, *image_shape)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


BAD_INPUT = [
    # train: every option's check (tests/test_cli.py has the first few)
    (["train", "--precision", "fp8"], "'fp8' is not one of"),
    (["train", "--keep-checkpoints", "some"], "'some' is not one of last, all"),
    (["train", "--limit-train", "0"], "--limit-train must be >= 1"),
    (["train", "--limit-test", "0"], "--limit-test must be >= 1"),
    (["train", "--eval-batch-size", "0"], "--eval-batch-size must be > 0"),
    (["train", "--momentum", "1"], "--momentum must be in [0, 1)"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["train", "--step-size", "0"], "--step-size must be > 0"),
    (["train", "--gamma", "0"], "--gamma must be > 0"),
    (["train", "--center-lr", "0"], "--center-lr must be > 0"),
    (["train", "--alpha", "-1"], "--alpha must be > 0"),
    (["train", "--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["train", "--resume", "{run}", "--out", "{tmp}/elsewhere"], "drop --out"),
    (["train", "--resume", "{run}", "--overwrite"], "contradict each other"),
    (["train", "--out", "{tmp}/file.txt"], "is a file, not a run folder"),
    (
        ["train", "--dataset", "mnist", "--data-dir", "{tmp}/flat", "--no-download"],
        "do not match ((20, 784) images, (20,) labels)",
    ),
    # embed
    (["embed", "{tmp}/missing"], "no run folder at"),
    (["embed", "{run}", "--batch-size", "0"], "--batch-size must be > 0"),
    (["embed", "{run}", "--limit", "0"], "--limit must be >= 1"),
    (["embed", "{run}", "--all-checkpoints", "--limit", "5"], "drop --limit"),
    (["embed", "{run}", "--device", "tpu"], "unknown device 'tpu'"),
    (
        ["embed", "{run}", "--dataset", "mnist", "--data-dir", "{tmp}/big"],
        "images are (32, 32), the model takes (28, 28)",
    ),
    # plot
    (["plot", "{run}", "--fps", "0"], "--fps must be > 0"),
    (["plot", "{run}", "--style", "poster"], "'poster' is not one of paper, slides"),
    (["plot", "{run}", "--out", "{tmp}/file.txt"], "is a file: pass a folder"),
    (["plot", "{run}", "--epochs", "twelve"], "'twelve' is not an epoch"),
    (["plot", "{run}", "--epochs", "99"], "epoch 99 is in no run"),
    (["plot", "{run}", "--dims", "0"], "give two dimension numbers"),
    (["plot", "{run}", "--formats", "avi"], "animation formats are gif, mp4"),
    (["plot", "{run}", "--split", "val"], "'val' is not one of train, test, both"),
    (["plot", "{run}", "--max-points", "0"], "--max-points must be >= 1"),
    (["plot", "{tmp}/missing"], "does not exist"),
    # report
    (["report", "{run}", "--last-k", "0"], "--last-k must be >= 1"),
    (["report", "{run}", "--threshold", "150"], "--threshold must be an accuracy in (0, 100]%"),
    (["report", "{run}", "--max-points", "0"], "--max-points must be >= 1"),
    (["report", "{run}", "--out", "{tmp}/file.txt"], "is a file: pass a folder"),
    (["report", "{run}", "--epochs", "99", "--quiet"], "--epochs 99 not recorded"),
    (["report", "{tmp}/missing"], "does not exist"),
    # sweep (tests/sweep/test_sweep.py has the grid's)
    (["sweep", "--grid", "seed=1", "--backend", "slurm"], "'slurm' is not one of local, ray"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT]
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    center_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    (tmp_path / "file.txt").write_text("mine")
    write_idx_folder(tmp_path / "flat", (784,))  # images stored flat: not (N, 28, 28)
    write_idx_folder(tmp_path / "big", (32, 32))
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    # The run's files stay as they are (run.h5 may gain its metrics cache: that is no change).
    run_before = sorted(p.name for p in center_run.iterdir())
    checkpoint = (center_run / "last.pt").stat().st_mtime_ns
    argv = [a.format(run=center_run, tmp=tmp_path) for a in arguments]
    monkeypatch.setattr(sys, "argv", ["cl-analyze", *argv])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert files_under(tmp_path) == before  # no file written
    assert not list(tmp_path.glob("artifacts/run*"))  # no run folder claimed
    assert not (tmp_path / "artifacts").exists()  # nor the folder of runs created
    assert sorted(p.name for p in center_run.iterdir()) == run_before
    assert (center_run / "last.pt").stat().st_mtime_ns == checkpoint


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if not path.is_dir())


def options_of(command: str) -> list[str]:
    """Each option's longest flag, from the command's own definition."""
    group = typer.main.get_command(cli.app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return [max(p.opts, key=len) for p in params if p.param_type_name == "option"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_lists_all_its_options(command: str) -> None:
    result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: cl-analyze {command}" in result.output
    options = options_of(command)
    assert len(options) >= 10 if command in ("train", "sweep") else len(options) >= 3
    for option in options:
        assert option in result.output, option


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output

"""`cl-analyze sweep`: grids, the sweep folder, skipping and resuming, both backends, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cl_analyze.cli import app
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, run_lock
from cl_analyze.sweep import SWEEP_JSON, load_sweep, run_sweep, sweep_spec
from cl_analyze.sweep.grid import (
    combination_name,
    convert_value,
    format_value,
    parse_grid_item,
)
from cl_analyze.training.checkpoints import load_checkpoint

CENTER_WEIGHTS = (0.01, 1.0)
SEEDS = (1, 2)
TINY_GRID = ["center-weight=0.01,1", "seed=1,2"]
EPOCHS = 1
TINY_FIXED: dict[str, object] = {
    "dataset": "mnist-5k",
    "limit_train": 200,
    "limit_test": 100,
    "epochs": EPOCHS,
    "lr": 0.01,
}
CLI = [sys.executable, "-m", "cl_analyze"]


def expected_names() -> set[str]:
    """The folder names, written out here from the documented pattern."""
    return {f"center-weight={w:g}_seed={s}" for w in CENTER_WEIGHTS for s in SEEDS}


def store_files(sweep_dir: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file inside the run folders."""
    return {
        str(path.relative_to(sweep_dir)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sweep_dir.glob("*/*")
        if path.parent.name != "logs"
    }


def rows_of(run_dir: Path) -> int:
    if not (run_dir / "run.h5").is_file():
        return 0
    try:
        with RunStore(run_dir) as store:
            return store.rows
    except (CLAnalyzeError, OSError):
        return 0  # being created right now


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2 x 2 tiny sweep, trained once with two local workers."""
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "tiny"
    result = run_sweep(sweep_spec(TINY_GRID, fixed=TINY_FIXED, out=sweep_dir, jobs=2, quiet=True))
    assert not result.interrupted
    return sweep_dir


# --- grid parsing (no training) ----------------------------------------------------------------


def test_grid_items_take_the_train_options_types() -> None:
    assert parse_grid_item("center-weight=0.003,0.01,1") == ("center_weight", (0.003, 0.01, 1.0))
    assert parse_grid_item("seed=1,2,3") == ("seed", (1, 2, 3))
    assert parse_grid_item("loss=softmax,center") == ("loss", ("softmax", "center"))
    assert parse_grid_item("limit_train=none,300") == ("limit_train", (None, 300))
    assert parse_grid_item("embed=true,off") == ("embed", (True, False))
    assert isinstance(parse_grid_item("lr=1")[1][0], float)
    with pytest.raises(CLAnalyzeError, match="is not an integer"):
        parse_grid_item("seed=1.5")
    with pytest.raises(CLAnalyzeError, match="is not a number"):
        convert_value("lr", "fast")


def test_folder_names_are_readable_and_exact() -> None:
    assert format_value(0.003) == "0.003"
    assert format_value(1.0) == "1"
    assert format_value(1e-5) == "1e-05"
    # %g keeps 6 digits; a value it would round keeps its full repr instead.
    assert float(format_value(0.1234567)) == 0.1234567
    assert combination_name({"center_weight": 0.01, "seed": 2}) == "center-weight=0.01_seed=2"


def test_grid_file(tmp_path: Path) -> None:
    grid_file = tmp_path / "sweep.toml"
    grid_file.write_text(
        "[grid]\ncenter-weight = [0.1, 1]\nloss = ['center']\n[fixed]\nepochs = 3\nlr = 1\n"
    )
    spec = sweep_spec(grid_file=grid_file, fixed={"seed": 4})
    assert spec.grid == (("center_weight", (0.1, 1.0)), ("loss", ("center",)))
    assert dict(spec.fixed) == {"epochs": 3, "lr": 1.0, "seed": 4}
    grid_file.write_text("[grid]\nseed = []\n")
    with pytest.raises(CLAnalyzeError, match="empty list"):
        sweep_spec(grid_file=grid_file)
    grid_file.write_text("[grid]\nseed = [1, 2.5]\n")
    with pytest.raises(CLAnalyzeError, match=r"seed value 2\.5 is not an integer"):
        sweep_spec(grid_file=grid_file)


# --- the local backend -------------------------------------------------------------------------


def test_local_sweep_trains_every_combination(tiny_sweep: Path) -> None:
    document = json.loads((tiny_sweep / SWEEP_JSON).read_text())
    assert document["grid"] == {"center_weight": list(CENTER_WEIGHTS), "seed": list(SEEDS)}
    assert document["fixed"] == TINY_FIXED
    assert {run["folder"] for run in document["runs"]} == expected_names()
    assert all(run["state"] == "done" and run["error"] is None for run in document["runs"])

    info = load_sweep(tiny_sweep)
    assert info.parameters == ("center_weight", "seed")
    first_rows: dict[tuple[float, int], np.ndarray] = {}
    for run in info.runs:
        with RunStore(run.folder) as store:
            # epochs + 1 complete rows, trained with this combination's values.
            assert store.rows == EPOCHS + 1
            assert store.config["center_weight"] == run.values["center_weight"]
            assert store.config["seed"] == run.values["seed"]
            assert store.config["limit_train"] == 200
            first_rows[(run.values["center_weight"], run.values["seed"])] = store.features(
                "test", 0
            )
    # Before training, features depend on the seed only (the model's init), not on lambda.
    for seed in SEEDS:
        np.testing.assert_allclose(first_rows[(0.01, seed)], first_rows[(1.0, seed)], atol=1e-5)
    assert not np.allclose(first_rows[(0.01, 1)], first_rows[(0.01, 2)])


def test_second_call_skips_complete_runs(tiny_sweep: Path) -> None:
    before = store_files(tiny_sweep)
    assert len(before) >= 4 * 3  # run.h5, last.pt, best.pt, config.json per run
    result = run_sweep(sweep_spec([], out=tiny_sweep, quiet=True))
    assert store_files(tiny_sweep) == before
    assert {run.name for run in result.runs} == expected_names()
    assert all(run.state == "done" and run.action == "skipped" for run in result.runs)
    document = json.loads((tiny_sweep / SWEEP_JSON).read_text())
    assert {(run["state"], run["action"]) for run in document["runs"]} == {("done", "skipped")}


def test_rerun_must_describe_the_same_sweep(tiny_sweep: Path) -> None:
    with pytest.raises(CLAnalyzeError, match="grid differs"):
        run_sweep(sweep_spec(["seed=1,2,3"], out=tiny_sweep, quiet=True))
    with pytest.raises(CLAnalyzeError, match=r"--lr 0\.1 contradicts"):
        run_sweep(sweep_spec([], fixed={"lr": 0.1}, out=tiny_sweep, quiet=True))
    # A live coordinator (this test process stands in for one) keeps a second one out.
    busy = pytest.raises(CLAnalyzeError, match=f"sweep, pid {os.getpid()}")
    with run_lock(tiny_sweep, "sweep", lock_name="sweep.lock"), busy:
        run_sweep(sweep_spec([], out=tiny_sweep, quiet=True))


def test_interrupted_sweep_resumes_and_failures_do_not_stop_others(tmp_path: Path) -> None:
    """mnist without its files fails first; mnist-5k still trains until Ctrl-C, then resumes."""
    sweep_dir = tmp_path / "sweep"
    command = [
        *CLI,
        "sweep",
        "--grid",
        "dataset=mnist,mnist-5k",
        "--no-download",
        "--data-dir",
        str(tmp_path / "no-data"),
        "--limit-train",
        "200",
        "--limit-test",
        "100",
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--out",
        str(sweep_dir),
        "--quiet",
    ]
    good = sweep_dir / "dataset=mnist-5k"
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # Mid-way: a checkpoint to resume from, and epochs still to train.
        while not ((good / "last.pt").is_file() and 1 <= rows_of(good) < 3):
            assert process.poll() is None and time.monotonic() < deadline, "no epoch in time"
            time.sleep(0.05)
        # Ctrl-C in a terminal reaches the whole process group.
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert f"--resume {sweep_dir}" in stderr

    runs = {run.name: run for run in load_sweep(sweep_dir).runs}
    assert runs["dataset=mnist"].state == "failed"
    assert "mnist" in str(runs["dataset=mnist"].error)
    assert runs["dataset=mnist-5k"].state == "interrupted"
    assert 1 <= rows_of(good) < 3
    # Rows up to the last checkpoint are what a resume keeps.
    kept_rows = int(load_checkpoint(good / "last.pt")["epoch"]) + 1
    with RunStore(good) as store:
        created = store.attrs["created"]
        kept_history = store.history["elapsed_s"][:kept_rows]

    result = run_sweep(sweep_spec([], resume=sweep_dir, quiet=True))
    states = {run.name: (run.state, run.action) for run in result.runs}
    assert states["dataset=mnist-5k"] == ("done", "resume")
    assert states["dataset=mnist"][0] == "failed"
    with RunStore(good) as store:
        assert store.rows == 3
        assert list(store.epochs) == [0, 1, 2]
        # Resumed, not restarted: the same store with its earlier rows untouched.
        assert store.attrs["created"] == created
        np.testing.assert_array_equal(store.history["elapsed_s"][:kept_rows], kept_history)
        assert store.config["limit_train"] == 200


# --- the Ray backend ---------------------------------------------------------------------------


def test_ray_sweep_on_a_local_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    sweep_dir = tmp_path / "ray-sweep"
    result = run_sweep(
        sweep_spec(TINY_GRID, fixed=TINY_FIXED, out=sweep_dir, backend="ray", jobs=2, quiet=True)
    )
    assert {run.name for run in result.runs} == expected_names()
    assert [run.state for run in result.runs] == ["done"] * 4, [run.error for run in result.runs]
    # One GPU per task where the cluster has GPUs (Ray then shows the task only its own).
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    for run in load_sweep(sweep_dir).runs:
        assert run.state == "done" and run.device == expected_device
        with RunStore(run.folder) as store:
            assert store.rows == EPOCHS + 1
            assert store.config["seed"] == run.values["seed"]


@pytest.mark.gpu
def test_local_sweep_gives_each_worker_a_gpu(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    count = torch.cuda.device_count()
    result = run_sweep(
        sweep_spec(["seed=1,2"], fixed=TINY_FIXED, out=tmp_path / "gpu", jobs=2, quiet=True)
    )
    # Worker i keeps GPU i mod count; the store records the device each run trained on.
    expected = {f"cuda:{i % count}" for i in range(2)}
    assert {run.device for run in result.runs} == expected
    for run in result.runs:
        assert run.state == "done", run.error
        with RunStore(run.folder) as store:
            assert store.attrs["device"] == run.device
            assert store.rows == EPOCHS + 1


# --- bad input ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "colour=1,2"], "unknown train option 'colour'"),
        (["--grid", "seed="], "empty list"),
        (["--grid", "seed"], "malformed --grid"),
        (["--grid", "seed=1,,2"], "malformed --grid"),
        (["--grid", "device=cpu,cuda"], "not sweepable"),
        (["--grid", "seed=1", "--seed", "2"], "both swept and fixed"),
        (["--grid", "center-weight=0,1"], "--center-weight must be > 0"),
        ([], "no grid given"),
        (["--grid", "seed=1", "--backend", "ray", "--address", "127.0.0.1:{port}"], "no Ray"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, arguments: list[str], message: str) -> None:
    arguments = [a.replace("{port}", str(free_port())) for a in arguments]
    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", *arguments, "--out", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, CLAnalyzeError), result.output
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert not out.exists()  # nothing is created for bad input


def test_cli_error_exit_code(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*CLI, "sweep", "--grid", "seed=1,2", "--grid", "seed=3", "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0
    assert "given twice" in completed.stderr

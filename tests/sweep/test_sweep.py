"""`cl-analyze sweep`: grids, the sweep folder, skipping and resuming, both backends, bad input."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import offline_data, run_main, tiny_config
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
from cl_analyze.sweep.state import SweepRun, write_sweep_json
from cl_analyze.training.checkpoints import load_checkpoint

CENTER_WEIGHTS = (0.01, 1.0)
SEEDS = (1, 2)
TINY_GRID = ["center-weight=0.01,1", "seed=1,2"]
EPOCHS = 1
TINY_FIXED: dict[str, object] = {
    "dataset": "mnist-5k",
    "limit_train": 64,
    "limit_test": 32,
    "epochs": EPOCHS,
    "lr": 0.01,
}
CLI = [sys.executable, "-m", "cl_analyze"]
# The default run's sweep: mnist-5k trains (two lambdas); mnist, absent offline, fails at once.
GRID_FILE = """
[grid]
dataset = ["mnist-5k", "mnist"]
center-weight = [0.01, 1]

[fixed]
limit-train = 64
limit-test = 32
epochs = 1
lr = 0.01
"""


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


@dataclass(frozen=True)
class CliSweep:
    folder: Path
    exit_code: int
    stderr: str


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory: pytest.TempPathFactory) -> CliSweep:
    """The GRID_FILE sweep through the CLI: --grid-file, --jobs 1, one worker process."""
    root = tmp_path_factory.mktemp("sweeps")
    (root / "sweep.toml").write_text(GRID_FILE)
    folder = root / "cli"
    arguments = ["sweep", "--grid-file", str(root / "sweep.toml"), "--jobs", "1", "--quiet"]
    arguments += ["--no-download", "--data-dir", str(root / "no-data"), "--out", str(folder)]
    result = CliRunner().invoke(app, arguments)
    return CliSweep(folder, result.exit_code, result.stderr)


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


def test_cli_sweep_trains_each_combination_and_a_failure_stops_no_other(
    cli_sweep: CliSweep,
) -> None:
    assert cli_sweep.exit_code == 1, cli_sweep.stderr  # some runs failed
    document = json.loads((cli_sweep.folder / SWEEP_JSON).read_text())
    assert document["grid"] == {"dataset": ["mnist-5k", "mnist"], "center_weight": [0.01, 1.0]}
    runs = {run.name: run for run in load_sweep(cli_sweep.folder).runs}
    assert set(runs) == {
        f"dataset={d}_center-weight={w:g}" for d in ("mnist-5k", "mnist") for w in (0.01, 1)
    }
    first_rows = []
    for weight in (0.01, 1.0):
        done = runs[f"dataset=mnist-5k_center-weight={weight:g}"]
        assert (done.state, done.error) == ("done", None)
        with RunStore(done.folder) as store:
            assert store.rows == EPOCHS + 1
            assert store.config["center_weight"] == weight and store.config["limit_train"] == 64
            first_rows.append(store.features("test", 0))
        failed = runs[f"dataset=mnist_center-weight={weight:g}"]
        assert failed.state == "failed" and "mnist not found" in str(failed.error)
        assert f"failed: {failed.name}: {failed.error} (log: {failed.log})" in cli_sweep.stderr
        assert failed.log is not None and "mnist not found" in failed.log.read_text()
    # Before training, features depend on the seed only (the model's init), not on lambda.
    np.testing.assert_allclose(first_rows[0], first_rows[1], atol=1e-5)
    assert f"2 of 4 runs failed in {cli_sweep.folder}" in cli_sweep.stderr


def test_a_second_call_skips_complete_runs_and_retries_failed_ones(cli_sweep: CliSweep) -> None:
    before = store_files(cli_sweep.folder)
    assert len(before) == 2 * 4  # run.h5, last.pt, best.pt, config.json per trained run
    result = run_sweep(sweep_spec([], resume=cli_sweep.folder, quiet=True))
    assert store_files(cli_sweep.folder) == before
    actions = {run.name: (run.state, run.action) for run in result.runs}
    for weight in ("0.01", "1"):
        assert actions[f"dataset=mnist-5k_center-weight={weight}"] == ("done", "skipped")
        assert actions[f"dataset=mnist_center-weight={weight}"] == ("failed", "train")


def test_rerun_must_describe_the_same_sweep(cli_sweep: CliSweep) -> None:
    folder = cli_sweep.folder
    with pytest.raises(CLAnalyzeError, match="grid differs"):
        run_sweep(sweep_spec(["seed=1,2,3"], out=folder, quiet=True))
    with pytest.raises(CLAnalyzeError, match=r"--lr 0\.1 contradicts"):
        run_sweep(sweep_spec([], fixed={"lr": 0.1}, out=folder, quiet=True))
    # A live coordinator (this test process stands in for one) keeps a second one out.
    busy = pytest.raises(CLAnalyzeError, match=f"sweep, pid {os.getpid()}")
    with run_lock(folder, "sweep", lock_name="sweep.lock"), busy:
        run_sweep(sweep_spec([], out=folder, quiet=True))


@pytest.mark.slow  # two worker processes training four runs; fast: the cli_sweep tests
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
            assert store.config["limit_train"] == 64
            first_rows[(run.values["center_weight"], run.values["seed"])] = store.features(
                "test", 0
            )
    # Before training, features depend on the seed only (the model's init), not on lambda.
    for seed in SEEDS:
        np.testing.assert_allclose(first_rows[(0.01, seed)], first_rows[(1.0, seed)], atol=1e-5)
    assert not np.allclose(first_rows[(0.01, 1)], first_rows[(0.01, 2)])


@pytest.mark.slow  # the 2 x 2 sweep; fast: test_a_second_call_skips_complete_runs_...
def test_second_call_skips_complete_runs(tiny_sweep: Path) -> None:
    before = store_files(tiny_sweep)
    assert len(before) >= 4 * 3  # run.h5, last.pt, best.pt, config.json per run
    result = run_sweep(sweep_spec([], out=tiny_sweep, quiet=True))
    assert store_files(tiny_sweep) == before
    assert {run.name for run in result.runs} == expected_names()
    assert all(run.state == "done" and run.action == "skipped" for run in result.runs)
    document = json.loads((tiny_sweep / SWEEP_JSON).read_text())
    assert {(run["state"], run["action"]) for run in document["runs"]} == {("done", "skipped")}


@pytest.mark.slow  # a real Ctrl-C to a sweep process and its resume; fast: the SIGTERM test
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


@pytest.mark.slow  # starting Ray alone takes many seconds; fast: the bad --address test
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


@pytest.mark.slow  # starts a local Ray
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_ray_without_a_gpu_refuses_device_cuda_in_one_line() -> None:
    pytest.importorskip("ray")
    import ray

    from cl_analyze.sweep.ray import RayBackend

    with pytest.raises(CLAnalyzeError, match="the Ray cluster has no GPU"):
        RayBackend(address=None, jobs=1, device="cuda")
    assert not ray.is_initialized()  # the Ray it started for the call is shut down again


@pytest.mark.gpu
def test_local_sweep_gives_each_worker_a_gpu(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    count = torch.cuda.device_count()
    result = run_sweep(
        sweep_spec(
            ["seed=1,2"],
            fixed={**TINY_FIXED, **offline_data()},
            out=tmp_path / "gpu",
            jobs=2,
            quiet=True,
        )
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


def test_cli_error_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(
        monkeypatch, capsys, "sweep", "--grid", "seed=1,2", "--grid", "seed=3",
        "--out", str(tmp_path / "s"),
    )  # fmt: skip
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "given twice" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grid", "data-dir=a/b,a-b"], "two combinations share a folder name"),
        (["--grid", "seed=1", "--jobs", "0"], "--jobs must be >= 1"),
        (["--grid-file", "{tmp}/missing.toml"], "cannot read --grid-file"),
        (["--grid-file", "{tmp}/broken.toml"], "is not valid TOML"),
        (["--grid-file", "{tmp}/no-grid.toml"], "needs a [grid] table"),
        (["--resume", "{tmp}/not-a-sweep"], "no sweep.json there"),
        (["--grid", "seed=1", "--out", "{tmp}/full"], "exists and is not a sweep folder"),
        (["--grid", "seed=1", "--address", "auto"], "--address is for the Ray backend"),
    ],
)
def test_more_bad_input_is_one_line_and_touches_nothing(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    (tmp_path / "broken.toml").write_text("[grid\nseed = [1")
    (tmp_path / "no-grid.toml").write_text("[fixed]\nseed = 1\n")
    (tmp_path / "not-a-sweep").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    result = CliRunner().invoke(app, ["sweep", *argv])
    assert isinstance(result.exception, CLAnalyzeError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


# --- failures while running --------------------------------------------------------------------


def write_one_run_sweep(sweep_dir: Path, fixed: dict[str, object]) -> Path:
    """A sweep folder of one run (seed=1), as an earlier call left it; returns the run folder."""
    run = sweep_dir / "seed=1"
    sweep_dir.mkdir(parents=True)
    write_sweep_json(
        sweep_dir,
        [("seed", (1,))],
        fixed,
        "local",
        [SweepRun(name="seed=1", folder=run, values={"seed": 1}, state="interrupted")],
    )
    return run


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("store", "run.h5"),
        ("store and no checkpoint", "run.h5"),  # what `fit` would have started again over
        ("checkpoint", "last.pt"),
    ],
)
def test_a_sweep_never_deletes_a_run_it_cannot_read(
    center_run: Path, tmp_path: Path, damage: str, named: str
) -> None:
    sweep_dir = tmp_path / "sweep"
    # The run's own options, with more epochs: unfinished, so the sweep would go on with it.
    fixed = {k: v for k, v in tiny_config().to_dict().items() if k != "seed"} | {"epochs": 5}
    run = write_one_run_sweep(sweep_dir, fixed)
    shutil.copytree(center_run, run)
    if damage.startswith("store"):
        os.truncate(run / "run.h5", (run / "run.h5").stat().st_size // 2)
    if damage == "store and no checkpoint":
        (run / "last.pt").unlink()
    if damage == "checkpoint":
        (run / "last.pt").write_bytes(b"half a checkpoint")
    before = {path.name: path.read_bytes() for path in run.iterdir()}

    result = run_sweep(sweep_spec([], resume=sweep_dir, quiet=True))
    (outcome,) = result.runs
    assert (outcome.state, outcome.action) == ("failed", "refused")
    assert outcome.error is not None and outcome.error.startswith("left untouched: ")
    assert named in outcome.error and "\n" not in outcome.error
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before
    assert outcome.log is not None and outcome.error in outcome.log.read_text()
    (recorded,) = load_sweep(sweep_dir).runs
    assert (recorded.state, recorded.error) == ("failed", outcome.error)


def sweep_state(sweep_dir: Path, name: str) -> str | None:
    try:
        document = json.loads((sweep_dir / SWEEP_JSON).read_text())
    except (OSError, ValueError):
        return None
    return next((run["state"] for run in document["runs"] if run["name"] == name), None)


def worker_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "sweep-worker"]


def test_a_crashed_worker_fails_its_run_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """The worker training seed=1 is killed (as the OOM killer would); seed=2 still runs, in a
    new worker, and fails for its own reason (mnist is absent offline)."""
    sweep_dir = tmp_path / "sweep"
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sweep_state(sweep_dir, "dataset=mnist-5k") == "running" and worker_processes():
                (worker,) = worker_processes()
                assert worker.pid is not None
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(worker.pid)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    fixed = {k: v for k, v in TINY_FIXED.items() if k != "dataset"}
    fixed |= {"epochs": 30, "download": False, "data_dir": str(tmp_path / "none")}
    result = run_sweep(sweep_spec(["dataset=mnist-5k,mnist"], fixed=fixed, out=sweep_dir))
    killer.join()
    assert killed, "the worker was never seen running"
    runs = {run.name: run for run in result.runs}
    assert runs["dataset=mnist-5k"].state == "failed"
    assert runs["dataset=mnist-5k"].error == f"worker exited with code {-signal.SIGKILL}"
    assert runs["dataset=mnist"].state == "failed"
    assert "mnist not found" in str(runs["dataset=mnist"].error)
    assert not worker_processes()


def test_sigterm_stops_the_sweep_like_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_dir = tmp_path / "sweep"

    def terminate_once_running() -> None:
        deadline = time.monotonic() + 120
        while sweep_state(sweep_dir, "seed=1") != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a scheduler would

    # Outside the sweep's own handler (before, after), a SIGTERM is ignored, not fatal to pytest.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sender = threading.Thread(target=terminate_once_running, daemon=True)
    try:
        sender.start()
        code, err = run_main(
            monkeypatch, capsys, "sweep", "--grid", "seed=1,2", "--dataset", "mnist-5k",
            "--limit-train", "64", "--limit-test", "32", "--epochs", "50", "--quiet",
            "--out", str(sweep_dir),
        )  # fmt: skip
        sender.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130, err
    assert f"continue with `cl-analyze sweep --resume {sweep_dir}`" in err
    runs = {run.name: run for run in load_sweep(sweep_dir).runs}
    assert runs["seed=1"].state == "interrupted"
    assert runs["seed=1"].error == "interrupted: rerun the sweep to resume it"
    assert runs["seed=2"].state == "pending"
    assert not worker_processes() and not (sweep_dir / "sweep.lock").exists()

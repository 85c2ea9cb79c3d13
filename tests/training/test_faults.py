"""Fault injection: a user's files are never lost, nothing hangs, bad input is one line.

Each test reproduces one way the landed code lost data, hung or showed a traceback (kills at
fixed fault points, truncated and garbled stores, racing lock holders, a full disk, NaN options).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    KILLED,
    append_toy_epochs,
    die,
    run_forked,
    run_main,
    tiny_config,
    toy_writer,
    write_toy_store,
)

from cl_analyze import cli
from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, RunWriter, file_lock, lock_holder, run_lock
from cl_analyze.training.fit import fit

CLI = [sys.executable, "-m", "cl_analyze"]
# The smallest run that still trains: seconds on any CPU.
SMALL = ["--dataset", "mnist-5k", "--limit-train", "64", "--limit-test", "32", "--lr", "0.01"]
SMALL += ["--device", "cpu", "--quiet", "--deterministic"]


def assert_one_line(err: str, *fragments: str, after_progress: bool = False) -> None:
    """The error is one line (after the run's progress lines, when it had begun)."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1] if after_progress else err
    assert line.startswith("error: ") and line.count("\n") <= 1, err
    for fragment in fragments:
        assert fragment in line, err


def killed_writer_store(path: Path, epochs: int = 3) -> None:
    """A store whose writer was killed (kill -9) after ``epochs`` complete epochs: no close,
    so HDF5's SWMR-writer flag stays set in the file."""

    def write_then_die() -> None:
        writer = toy_writer(path)  # held: a collected writer would close the file
        append_toy_epochs(writer, epochs)
        die()

    assert run_forked(write_then_die) == KILLED


# --- 1, 2: --out and --overwrite never touch what is not a run ---------------------------------


def test_overwrite_refuses_a_folder_that_holds_no_run(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("important")
    with pytest.raises(CLAnalyzeError, match=r"not part of a cl-analyze run \(sub, thesis.txt\)"):
        fit(tiny_config(), folder, overwrite=True)
    assert (folder / "thesis.txt").read_text() == "important" and (folder / "sub").is_dir()
    assert sorted(p.name for p in folder.iterdir()) == ["sub", "thesis.txt"]


def test_overwrite_refuses_a_run_folder_with_other_files_and_deletes_nothing(
    center_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    (run / "notes.md").write_text("mine")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(CLAnalyzeError, match=r"notes\.md"):
        fit(tiny_config(), run, overwrite=True)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_out_with_a_foreign_config_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"mine": true}')
    for overwrite in (False, True):
        with pytest.raises(CLAnalyzeError, match=r"config\.json"):
            fit(tiny_config(), tmp_path, overwrite=overwrite)
    assert json.loads((tmp_path / "config.json").read_text()) == {"mine": True}


def test_overwrite_of_a_real_run_replaces_only_its_files(center_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    torch.save({"x": 1}, run / "epoch_007.pt")  # a file of the old run only
    fit(tiny_config(loss="softmax", epochs=1), run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "run.h5"]
    with RunStore(run) as store:
        assert store.rows == 2 and store.config["loss"] == "softmax" and not store.has_centers


# --- 3: a damaged store fails fast, never hangs ------------------------------------------------


@pytest.mark.parametrize("writer", ["closed", "killed"])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_a_truncated_store_fails_fast(tmp_path: Path, writer: str, keep: float) -> None:
    path = tmp_path / "run.h5"
    if writer == "closed":
        write_toy_store(path, epochs=40)
    else:
        killed_writer_store(path, epochs=40)
    os.truncate(path, int(path.stat().st_size * keep))
    outcome = tmp_path / "outcome.txt"

    def read() -> None:
        start = time.monotonic()
        try:
            RunStore(path).close()
            outcome.write_text("opened")
        except CLAnalyzeError as error:
            outcome.write_text(f"{time.monotonic() - start:.1f} {error}")

    # In a child with a time limit: the bug was HDF5 retrying for many minutes.
    assert run_forked(read, timeout=120) == 0
    seconds, _, message = outcome.read_text().partition(" ")
    assert "damaged" in message or "cannot open" in message, outcome.read_text()
    assert float(seconds) < 10


def test_a_truncated_store_is_a_one_line_error_for_report_and_resume(
    center_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    os.truncate(run / "run.h5", (run / "run.h5").stat().st_size // 2)
    for command in (["report", str(run), "--no-figures"], ["train", "--resume", str(run)]):
        code, err = run_main(monkeypatch, capsys, *command)
        assert code == 2
        assert_one_line(err, "run.h5", "truncated")


def test_stale_partial_files_are_removed_on_the_next_start(
    first_epoch_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(first_epoch_run, run)
    stale = ["last.partial.pt", "run.partial.h5", "run.h5.rebuild", "best.pt.tmp"]
    for name in stale:
        (run / name).write_bytes(b"x" * 3_000_000)  # what a kill or a full disk left
    fit(tiny_config(loss="center", epochs=2), run, resume=True)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "run.h5"]


# --- 4: kill -9 at the moment the store appears ------------------------------------------------


def killed_in_create(config: TrainConfig, run: Path) -> None:
    layout = RunWriter._layout

    def dying_layout(handle: h5py.File, **kwargs: object) -> None:
        layout(handle, **kwargs)
        handle.flush()
        die()  # killed while the new store's file exists but is not yet complete

    RunWriter._layout = staticmethod(dying_layout)  # type: ignore[method-assign]  # child only
    fit(config, run)


def killed_before_checkpoint(config: TrainConfig, run: Path) -> None:
    import cl_analyze.training.fit as training

    def dying_save(path: Path, payload: object) -> None:
        die()  # killed after epoch 0 is stored, before its checkpoint

    training.save_checkpoint = dying_save  # type: ignore[assignment]  # child only
    fit(config, run)


@pytest.mark.parametrize("kill", [killed_in_create, killed_before_checkpoint])
def test_a_run_killed_before_its_first_checkpoint_resumes_from_scratch(
    tmp_path: Path, first_epoch_run: Path, kill
) -> None:
    config = tiny_config(loss="center", epochs=1)
    run = tmp_path / "run"
    assert run_forked(lambda: kill(config, run)) == KILLED
    if kill is killed_in_create:
        # No store that HDF5 cannot open: only the partial file, which a new run cleans up.
        assert not (run / "run.h5").exists()
        fit(config, run)
    else:
        with h5py.File(run / "run.h5", "r", swmr=True) as handle:
            assert handle.attrs["epochs_complete"] == 1
        fit(config, run, resume=True)
    # The same as the same command never killed.
    with RunStore(run) as a, RunStore(first_epoch_run) as b:
        assert a.epochs.tolist() == b.epochs.tolist() == [0, 1]
        assert np.array_equal(a.features("test"), b.features("test"))
    assert not list(run.glob("*partial*")) and not (run / "run.lock").exists()


def test_resume_never_starts_again_over_a_store_it_cannot_read(
    first_epoch_run: Path, tmp_path: Path
) -> None:
    """Without last.pt a run restarts only if its store shows nothing trained; a store that
    does not read shows nothing, and must not be taken for empty (and replaced)."""
    run = tmp_path / "run"
    shutil.copytree(first_epoch_run, run)
    (run / "last.pt").unlink()
    os.truncate(run / "run.h5", (run / "run.h5").stat().st_size // 2)
    damaged = (run / "run.h5").read_bytes()
    with pytest.raises(CLAnalyzeError, match=r"run\.h5 is damaged: it is truncated"):
        fit(tiny_config(loss="center", epochs=1), run, resume=True)
    assert (run / "run.h5").read_bytes() == damaged


# --- 5: the write flag of a killed writer is cleared by the next command -----------------------


def test_a_killed_writers_store_opens_plainly_after_the_next_command(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    killed_writer_store(path, epochs=3)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")  # the premise: HDF5 refuses a plain open after the kill
    with RunStore(tmp_path) as store:
        assert store.rows == 3
    with h5py.File(path, "r") as handle:  # plain h5py, as the README promises
        assert handle.attrs["epochs_complete"] == 3
        assert handle["test/features"][2].tolist() == [[2, 2]] * 3


def test_a_live_writers_store_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    writer = RunWriter.create(
        path,
        dataset="toy",
        class_names=["a", "b"],
        feat_dim=2,
        splits={"test": (np.array([0, 1]), np.arange(2))},
        history_names=["test_accuracy"],
        with_centers=False,
    )
    with run_lock(tmp_path, "train"), writer:
        writer.append_epoch(0, scalars={"test_accuracy": 1.0})
        with RunStore(tmp_path) as store:
            assert store.rows == 1
        writer.append_epoch(1, scalars={"test_accuracy": 1.0})  # still the writer's file
    with RunStore(tmp_path) as store:
        assert store.rows == 2


# --- 7: SIGTERM and Ctrl-C stop within a batch and say what is saved ---------------------------


def start_training(run: Path, *extra: str) -> subprocess.Popen[str]:
    command = [*CLI, "train", *SMALL, "--out", str(run), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(run: Path, process: subprocess.Popen[str], rows: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "last.pt").exists():
            with RunStore(run) as store:
                if store.rows >= rows:
                    return
        time.sleep(0.05)
    raise AssertionError(f"no {rows} rows: {process.poll()} {process.stderr}")


@pytest.mark.slow  # a real process signalled; fast: test_train_command.py, in-process
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_training_within_the_epoch_and_says_what_is_saved(
    tmp_path: Path, signal_number: int
) -> None:
    run = tmp_path / "run"
    # Epochs of 3,000 images at batch 16 take far longer than one batch: stopping before the
    # next row shows the stop did not wait for the epoch to end.
    process = start_training(run, "--limit-train", "3000", "--batch-size", "16", "--epochs", "3")
    wait_for_rows(run, process, 1)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    name = signal.Signals(signal_number).name
    assert f"stopped ({name}): no trained epoch is saved yet in {run}" in err
    assert "Traceback" not in err and not (run / "run.lock").exists()
    with RunStore(run) as store:
        assert store.rows == 1  # epoch 1 was cut short, not finished
    with h5py.File(run / "run.h5", "r") as handle:  # plain h5py reads it
        assert handle.attrs["epochs_complete"] == 1


# --- 8: the lock is atomic ---------------------------------------------------------------------


def test_an_empty_lock_file_of_a_live_holder_is_not_stolen(tmp_path: Path) -> None:
    with run_lock(tmp_path, "train"):
        (tmp_path / "run.lock").write_text("")  # the holder has not written its pid yet
        assert lock_holder(tmp_path / "run.lock") is not None
        busy = pytest.raises(CLAnalyzeError, match="being written by another process")
        with busy, run_lock(tmp_path, "metrics"):
            pass


def _hold_lock(folder: str, log: str, start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)
    for _ in range(20):
        try:
            with file_lock(Path(folder) / "run.lock", "train"):
                entered = time.monotonic_ns()
                time.sleep(0.002)
                left = time.monotonic_ns()
            with open(log, "a") as handle:
                handle.write(f"{entered} {left}\n")
        except CLAnalyzeError:
            pass


def test_racing_processes_never_hold_the_lock_together(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    log = tmp_path / "held.log"
    start = time.time() + 1.0
    workers = [
        context.Process(target=_hold_lock, args=(str(tmp_path), str(log), start)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    spans = sorted(tuple(map(int, line.split())) for line in log.read_text().splitlines())
    assert len(spans) >= 4
    for (_, left), (entered, _) in itertools.pairwise(spans):
        assert left <= entered, "two processes held the lock at once"


# --- 9: a damaged schema is one line -----------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda h: h.attrs.__delitem__("epochs_complete"), "epochs_complete attribute is missing"),
        (lambda h: h.attrs.__setitem__("class_names", "[a, b"), "class_names attribute is not"),
        (lambda h: h.attrs.__setitem__("schema_version", 99), "newer than this cl-analyze"),
        (lambda h: h.attrs.modify("epochs_complete", 7), "epochs_complete is 7"),
        (lambda h: h.__delitem__("history"), "no /history group"),
    ],
)
def test_a_damaged_schema_is_a_one_line_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage,
    message: str,
) -> None:
    write_toy_store(tmp_path / "run" / "run.h5")
    with h5py.File(tmp_path / "run" / "run.h5", "r+") as handle:
        damage(handle)
    with pytest.raises(CLAnalyzeError, match=message):
        RunStore(tmp_path / "run")
    for command in ("report", "plot"):
        code, err = run_main(monkeypatch, capsys, command, str(tmp_path / "run"))
        assert code == 2
        assert_one_line(err, "run.h5", message.split(" ")[0])


# --- 10: a full disk is one line, and the run resumes ------------------------------------------


def _limit_file_size() -> None:
    # Files may not grow past 4 MB: a checkpoint (~6.4 MB) cannot be written, the store can.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process


def test_a_full_disk_is_one_line_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    output = tmp_path / "output.txt"

    def train_on_a_full_disk() -> None:
        _limit_file_size()  # in the forked child only
        sys.argv = ["cl-analyze", "train", *SMALL, "--epochs", "1", "--out", str(run)]
        cli.main()

    assert run_forked(train_on_a_full_disk, output=output) == 2, output.read_text()
    saved = "no trained epoch is saved yet"
    assert_one_line(
        output.read_text(), "cannot write", ".pt", saved, f"--resume {run}", after_progress=True
    )
    assert not list(run.glob("*partial*")) and not (run / "run.lock").exists()
    code, err = run_main(monkeypatch, capsys, "train", "--resume", str(run))
    assert code in (0, None), err
    with RunStore(run) as store:
        assert store.epochs.tolist() == [0, 1]


@pytest.mark.slow  # three real processes; fast: the forked full-disk test above
def test_a_full_disk_while_resuming_is_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    subprocess.run([*CLI, "train", *SMALL, "--epochs", "1", "--out", str(run)], check=True)
    command = [*CLI, "train", "--resume", str(run), "--epochs", "2"]
    full = subprocess.run(command, capture_output=True, text=True, preexec_fn=_limit_file_size)
    assert full.returncode == 2, full.stderr
    assert_one_line(
        full.stderr,
        "cannot write",
        ".pt",
        "1 trained epoch is saved",
        f"--resume {run}",
        after_progress=True,
    )
    assert not list(run.glob("*partial*")) and not (run / "run.lock").exists()
    subprocess.run([*CLI, "train", "--resume", str(run), "--epochs", "2"], check=True)
    with RunStore(run) as store:
        assert store.epochs.tolist() == [0, 1, 2]


# --- 11: a read-only folder is one line --------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder no one may write in: chmod for a user; for root, who writes anywhere, the
    immutable attribute (ext4 and most filesystems)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root without chattr +i: no way to make a folder read-only here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_out_folder_is_one_line(
    read_only_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", *SMALL, "--epochs", "1", "--out", str(read_only_folder)]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert_one_line(err, str(read_only_folder), "writable")
    assert list(read_only_folder.iterdir()) == []


# --- 12: an unsafe checkpoint is one line ------------------------------------------------------


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        ("torch.save", "not safe to load"),  # a torch archive whose pickle runs code
        ("pickle.dump", "not a complete torch archive"),  # a bare pickle: never unpickled
        ("junk", "not a complete torch archive"),  # torch's unpickler raised KeyError on it
    ],
)
def test_a_malicious_or_garbled_checkpoint_is_refused_in_one_line(
    center_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    writer: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    payload = {"format": "cl-analyze-checkpoint", "model": Exploit()}
    if writer == "torch.save":
        torch.save(payload, run / "last.pt")
    elif writer == "pickle.dump":
        with open(run / "last.pt", "wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    else:
        (run / "last.pt").write_bytes(b"half a checkpoint")
    code, err = run_main(monkeypatch, capsys, "embed", str(run), "--quiet")
    assert code == 2
    assert_one_line(err, "last.pt", message)
    assert not (tmp_path / "pwned").exists()


# --- 13: NaN and infinity are refused ----------------------------------------------------------

FLOAT_OPTIONS = [
    name for name, kind in TrainConfig.__annotations__.items() if kind in ("float", float)
]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_non_finite_float_options_are_refused(
    option: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    flag = "--" + option.replace("_", "-")
    code, err = run_main(monkeypatch, capsys, "train", "--dataset", "mnist-5k", flag, value)
    assert code == 2
    assert_one_line(err, flag, "finite")
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


# --- the fault-injection script ----------------------------------------------------------------


@pytest.mark.slow
def test_fault_injection_script_finds_no_problem(tmp_path: Path) -> None:
    from benchmarks.fault_injection import run_fault_injection

    summary = run_fault_injection(kills=5, folder=tmp_path, seed=1)
    assert summary.problems == [] and summary.identical, summary.report()

"""Kill `cl-analyze train` at random moments in one folder, resuming after each kill.

    python -m benchmarks.fault_injection --kills 20          # about 4 minutes on 2 cores

After every ``kill -9`` it checks that the store opens with cl-analyze (which clears the killed
writer's open-for-write flag), then with plain ``h5py.File(path, "r")``, that its completed epochs
are finite and never fewer than before the kill, and that no partial file outlives the next
start. At the end the resumed run must equal, bit for bit, an uninterrupted ``--deterministic``
run of the same config. Exit code 0 when every check held; the summary names each kill's moment.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cl_analyze.config import TrainConfig
from cl_analyze.store import RunStore, lock_holder
from cl_analyze.training.fit import fit

CONFIG = TrainConfig(
    dataset="mnist-5k",
    limit_train=256,
    limit_test=64,
    epochs=8,
    lr=0.01,
    device="cpu",
    deterministic=True,
    loss="center",
)


def train_command(run: Path, *, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "cl_analyze", "train", "--quiet"]
    if resume:
        return [*command, "--resume", str(run)]
    for key, value in CONFIG.to_dict().items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            command.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            command += [flag, str(value)]
    return [*command, "--out", str(run)]


@dataclass
class Kill:
    delay_s: float
    rows_before: int
    rows_after: int
    finished: bool  # the run ended before the kill landed


@dataclass
class Summary:
    kills: list[Kill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    identical: bool = False

    def report(self) -> str:
        landed = [k for k in self.kills if not k.finished]
        progressed = sum(k.rows_after > k.rows_before for k in landed)
        lines = [
            f"kills: {len(self.kills)} ({len(landed)} landed mid-run, {progressed} after new"
            " epochs were stored, the rest during start-up or within an epoch)",
            "moments (s after start): " + ", ".join(f"{k.delay_s:.1f}" for k in self.kills),
            f"problems: {len(self.problems)}",
            *(f"  - {p}" for p in self.problems),
            "final run equals an uninterrupted one: " + ("yes" if self.identical else "NO"),
        ]
        return "\n".join(lines)


def check_after_kill(run: Path, rows_before: int, summary: Summary) -> int:
    if not (run / "run.h5").exists():
        return 0
    try:
        with RunStore(run) as store:  # clears the killed writer's flag
            rows = store.rows
            for split in store.splits:
                if rows and not np.isfinite(store.features(split)).all():
                    summary.problems.append(f"non-finite {split} features after a kill")
        with h5py.File(run / "run.h5", "r") as handle:  # plain h5py, no SWMR
            if int(handle.attrs["epochs_complete"]) != rows:
                summary.problems.append("plain h5py sees another row count")
    except Exception as error:  # any failure to read is what this script looks for
        summary.problems.append(f"store unreadable after a kill: {error}")
        return rows_before
    if rows < rows_before:
        summary.problems.append(f"completed epochs went from {rows_before} to {rows}")
    return rows


def run_fault_injection(kills: int, folder: Path, seed: int = 0) -> Summary:
    rng = random.Random(seed)
    run = folder / "killed"
    summary = Summary()
    rows = 0
    for _ in range(kills):
        resume = (run / "run.h5").exists() or (run / "last.pt").exists()
        process = subprocess.Popen(
            train_command(run, resume=resume),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 5.0))  # during start-up: imports, data, folder checks
        else:
            # Once the trainer holds the lock: creating the store, epochs, checkpoints.
            # (Held, not present: a killed trainer's lock file stays, its flock does not.)
            while lock_holder(run / "run.lock") is None and process.poll() is None:
                if time.monotonic() - started > 120:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 8.0))
        delay = time.monotonic() - started
        finished = process.poll() is not None
        if not finished:
            process.send_signal(signal.SIGKILL)
        process.wait()
        after = check_after_kill(run, rows, summary)
        summary.kills.append(Kill(delay, rows, after, finished))
        rows = after
        if finished and rows == CONFIG.epochs + 1:
            break
    subprocess.run(train_command(run, resume=True), check=True, capture_output=True)
    leftovers = [p.name for p in run.iterdir() if "partial" in p.name or p.suffix == ".lock"]
    if leftovers:
        summary.problems.append(f"left after the final resume: {leftovers}")
    straight = folder / "straight"
    fit(CONFIG, straight)
    with RunStore(run) as a, RunStore(straight) as b:
        same = a.epochs.tolist() == b.epochs.tolist() == list(range(CONFIG.epochs + 1))
        for split in ("train", "test"):
            same &= np.array_equal(a.features(split), b.features(split))
        same &= np.array_equal(a.centers(), b.centers())
        for name in ("test_accuracy", "train_loss_ce", "train_loss_center"):
            same &= np.array_equal(a.history[name], b.history[name], equal_nan=True)
    summary.identical = bool(same)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        summary = run_fault_injection(args.kills, Path(folder), args.seed)
    print(summary.report())
    return 0 if summary.identical and not summary.problems else 1


if __name__ == "__main__":
    sys.exit(main())

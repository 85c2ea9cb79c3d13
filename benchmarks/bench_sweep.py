"""A tiny 4-run sweep (`cl-analyze sweep --jobs 2`) against the same 4 runs as sequential
`cl-analyze train` calls (a shell loop, the baseline), plus what one mnist-5k epoch costs on CPU.

Run: python -m benchmarks.run sweep
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cl_analyze.store import RunStore

TINY = ["--dataset", "mnist-5k", "--limit-train", "200", "--limit-test", "100"]
TINY += ["--epochs", "1", "--lr", "0.01", "--quiet"]
GRID = [(weight, seed) for weight in ("0.01", "1") for seed in ("1", "2")]
CLI = [sys.executable, "-m", "cl_analyze"]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        loop = sum(
            timed(
                [
                    *CLI,
                    "train",
                    *TINY,
                    "--center-weight",
                    w,
                    "--seed",
                    s,
                    "--out",
                    str(root / f"{w}_{s}"),
                ]
            )
            for w, s in GRID
        )
        grid = ["--grid", "center-weight=0.01,1", "--grid", "seed=1,2"]
        sweep = timed([*CLI, "sweep", *TINY, *grid, "--jobs", "2", "--out", str(root / "sweep")])
        print(f"4 tiny runs: sequential `train` calls {loop:.1f} s, `sweep --jobs 2` {sweep:.1f} s")
        print(f"ratio (train loop / sweep): {loop / sweep:.2f}x")

        run = root / "epoch-cost"
        timed(
            [*CLI, "train", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(run), "--quiet"]
        )
        with RunStore(run) as store:
            history = store.history
            train_n = len(store.labels("train"))
        train_s, embed_s = float(history["train_time_s"][1]), float(history["embed_time_s"][1])
        print(
            f"one mnist-5k epoch on CPU: train {train_s:.1f} s ({train_n / train_s:.0f} img/s),"
            f" embedding {embed_s:.1f} s, total {train_s + embed_s:.1f} s"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes slow every number)")


if __name__ == "__main__":
    main()

"""What might speed up fp32 LeNet++ on a CPU without native bf16 (AVX2): each try against the
current code path, in the same run, on the real mnist-5k digits.

    python -m benchmarks.fp32_tries            # every try, about 5 minutes on 2 cores
    python -m benchmarks.fp32_tries eval-128   # one try (the baseline always runs first and last)

Each try runs in its own process (thread and OpenMP settings are read once, at start-up), with
the baseline run first and last so that drift from other jobs on the machine shows. Measured:
training (batch 64, SGD step included) and the embedding pass (eval mode, no grad), in img/s.
Only what reaches >= 1.2x is adopted (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl_analyze.data import load_dataset, normalise
from cl_analyze.hardware import cpu_summary
from cl_analyze.models import LeNetPlusPlus

TRAIN_IMAGES = int(os.environ.get("BENCH_IMAGES", "1024"))
EMBED_IMAGES = 2048
BATCH = 64

# name -> (environment, what it changes, where it applies)
TRIES: dict[str, tuple[dict[str, str], str]] = {
    "baseline": ({}, "fp32, 2 threads, oneDNN convolutions, NCHW, eval batch 1024"),
    "threads-1": ({}, "torch.set_num_threads(1)"),
    "omp-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, "OMP_WAIT_POLICY=PASSIVE (no spinning)"),
    "omp-active": ({"OMP_WAIT_POLICY": "ACTIVE"}, "OMP_WAIT_POLICY=ACTIVE (always spin)"),
    "no-onednn": ({}, "torch.backends.mkldnn.enabled = False (ATen's own convolutions)"),
    "channels-last": ({}, "model and input in channels_last"),
    "compile": ({}, "torch.compile(model) (inductor, C++ on CPU); compile time excluded"),
    "eval-512": ({}, "embedding pass at eval batch 512"),
    "eval-256": ({}, "embedding pass at eval batch 256"),
    "eval-128": ({}, "embedding pass at eval batch 128"),
    "eval-64": ({}, "embedding pass at eval batch 64"),
}
EVAL_BATCHES = {"eval-512": 512, "eval-256": 256, "eval-128": 128, "eval-64": 64}


def _model(try_name: str) -> nn.Module:
    torch.manual_seed(1)
    model: nn.Module = LeNetPlusPlus()
    if try_name == "channels-last":
        model = model.to(memory_format=torch.channels_last)
    return model


def _prepare(try_name: str, images: torch.Tensor) -> torch.Tensor:
    if try_name == "channels-last":
        return images.contiguous(memory_format=torch.channels_last)
    return images


def measure(try_name: str) -> dict[str, float]:
    """One try in this process: training and embedding img/s."""
    if try_name == "threads-1":
        torch.set_num_threads(1)
    if try_name == "no-onednn":
        torch.backends.mkldnn.enabled = False
    dataset = load_dataset("mnist-5k")
    images = normalise(dataset.train.images, dataset.mean, dataset.std)
    labels = dataset.train.labels
    model = _model(try_name)
    run: Callable[..., Any] = model
    compile_s = 0.0
    if try_name == "compile":
        start = time.perf_counter()
        run = torch.compile(model)
        x = _prepare(try_name, images[:BATCH])
        F.cross_entropy(run(x)[1], labels[:BATCH]).backward()  # compiles forward + backward
        with torch.no_grad():
            model.eval()
            run(images[:1024])
            run(images[:BATCH])
            model.train()
        compile_s = time.perf_counter() - start
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    model.train()
    seconds = 0.0
    steps = TRAIN_IMAGES // BATCH
    for step in range(steps + 2):  # two warm-up steps: kernels are picked on first use
        x = _prepare(try_name, images[step * BATCH : (step + 1) * BATCH])
        y = labels[step * BATCH : (step + 1) * BATCH]
        start = time.perf_counter()
        _, logits = run(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:
            seconds += time.perf_counter() - start
    train_rate = steps * BATCH / seconds
    eval_batch = EVAL_BATCHES.get(try_name, 1024)
    model.eval()
    with torch.no_grad():
        run(_prepare(try_name, images[:eval_batch]))  # warm-up
        start = time.perf_counter()
        for first in range(0, EMBED_IMAGES, eval_batch):
            run(_prepare(try_name, images[first : first + eval_batch]))
        embed_rate = EMBED_IMAGES / (time.perf_counter() - start)
    return {"train": train_rate, "embed": embed_rate, "compile_s": compile_s}


def store_write_seconds(train: int, test: int) -> float:
    """One epoch's row (features, predictions, scalars) appended and flushed: the most that
    overlapping the store write with the next epoch's compute could save."""
    import tempfile

    import numpy as np

    from cl_analyze.store import RunWriter

    rng = np.random.default_rng(0)
    sizes = {"train": train, "test": test}
    with tempfile.TemporaryDirectory() as folder:
        splits = {k: (rng.integers(0, 10, n), np.arange(n)) for k, n in sizes.items()}
        writer = RunWriter.create(
            Path(folder) / "run.h5",
            dataset="x",
            class_names=list("0123456789"),
            feat_dim=2,
            splits=splits,
            history_names=("test_accuracy",),
            with_centers=True,
        )
        with writer:
            start = time.perf_counter()
            for epoch in range(5):
                writer.append_epoch(
                    epoch,
                    scalars={"test_accuracy": 0.5},
                    features={k: rng.normal(size=(n, 2)).astype("f4") for k, n in sizes.items()},
                    predictions={k: rng.integers(0, 10, n) for k, n in sizes.items()},
                    centers=rng.normal(size=(10, 2)).astype("f4"),
                )
            return (time.perf_counter() - start) / 5


def main(names: list[str]) -> None:
    print(cpu_summary())
    print(f"load average {os.getloadavg()[0]:.1f} at start; {TRAIN_IMAGES} training images")
    order = ["baseline", *(n for n in names or TRIES if n != "baseline"), "baseline"]
    results: list[tuple[str, dict[str, float]]] = []
    for name in order:
        env = {**os.environ, **TRIES[name][0]}
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.fp32_tries", "--one", name],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append((name, json.loads(output.strip().splitlines()[-1])))
        print(f"  {name:14s} done", flush=True)
    base = [r for n, r in results if n == "baseline"]
    train0 = sum(r["train"] for r in base) / len(base)
    embed0 = sum(r["embed"] for r in base) / len(base)
    print(f"baseline runs: train {[round(r['train']) for r in base]} img/s,"
          f" embed {[round(r['embed']) for r in base]} img/s (first, last)")  # fmt: skip
    print(f"{'try':14s} {'train img/s':>12s} {'ratio':>6s} {'embed img/s':>12s} {'ratio':>6s}")
    for name, r in results[1:-1]:
        extra = f"  (compile {r['compile_s']:.0f} s)" if r["compile_s"] else ""
        print(
            f"{name:14s} {r['train']:12.0f} {r['train'] / train0:5.2f}x"
            f" {r['embed']:12.0f} {r['embed'] / embed0:5.2f}x  {TRIES[name][1]}{extra}"
        )
    small, full = store_write_seconds(4000, 1000), store_write_seconds(60000, 10000)
    epoch_small = 4000 / train0 + 5000 / embed0
    print(
        f"store write of one epoch's row: mnist-5k {1000 * small:.1f} ms"
        f" ({100 * small / epoch_small:.2f}% of a {epoch_small:.0f} s epoch), full MNIST"
        f" {1000 * full:.1f} ms: overlapping it with compute gains at most"
        f" {epoch_small / (epoch_small - small):.3f}x"
    )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
    else:
        main(sys.argv[1:])

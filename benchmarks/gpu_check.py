"""The GPU check in one call: CUDA tests, the training benchmark, the experiment, a report.

    bash benchmarks/gpu_check.sh [OUT] [--work-dir DIR] [--budget-s S] [--smoke]

Runs from the source tree with nothing installed (``PYTHONPATH=.``) on what a bare CUDA image
with PyTorch holds, offline. Phases, each timed:

1. ``pytest -m gpu`` on the test files holding CUDA tests (skipped by ``--smoke``);
2. the training benchmark on the device: cl-analyze's loop against the reference-style loop
   (``benchmarks/bench_train.py``), one epoch of the same images each, as a ratio; the embedding
   pass at several batch sizes; on CUDA, the levers not yet in the package (a CUDA-graphed step);
3. the reference experiment: softmax and center loss at the reference's settings on full
   Fashion-MNIST, every epoch's embeddings of all 70,000 images. The budget guard times the
   first epochs and trains fewer than asked when they would not fit, and says so;
4. ``report`` on both runs;
5. ``results.md`` and ``results.json``: the machine, the wall time of each phase, the ratios,
   and each run's numbers read back from its store.

OUT holds only small files (results, logs, the report packed in one ``report.tar.gz``): the
device tool brings back at most 8 files of 16 MiB. The run stores (about 85 MB each at 100
epochs) and the report folder go to ``--work-dir`` (default: OUT itself; on the device tool,
pass a folder outside $OUT). The CUDA-graph lever runs last: a failed capture cannot spoil the
experiment.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F

from cl_analyze.atomic import partial_path, write_text_atomic
from cl_analyze.config import TrainConfig
from cl_analyze.data import Dataset, find_idx_folder, load_dataset, normalise
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.losses import CenterLoss
from cl_analyze.models import LeNetPlusPlus
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore
from cl_analyze.training import TrainState, evaluate, train_one_epoch
from cl_analyze.training.fit import fit, process_state_restored
from cl_analyze.training.stopping import TrainingStopped

REPO = Path(__file__).resolve().parent.parent
DATASET = "fashion-mnist"
DEFAULT_BUDGET_S = 450.0  # 8 minutes less a margin for start-up and packing
# What the report costs, estimated ahead (no GPU has run it yet): a fixed part (figures, the
# findings) and a part per stored epoch and run (the geometry metrics of 70,000 points).
REPORT_FIXED_S = 30.0
REPORT_PER_EPOCH_S = 0.15  # CPU: ~0.7 s (BACKGROUND.md); the metrics run on CUDA there
PROBE_EPOCHS = 3  # epoch 1 carries cuDNN's autotuning; epochs 2-3 give the steady cost
CENTER_COST_FACTOR = 1.15  # a center-loss epoch against a softmax one (a few more kernels)
GPU_TESTS_TIMEOUT_S = 120.0
LEVER_S = 15.0  # the CUDA-graph lever: capture and one epoch, expected a few seconds
TARGET_RATIO = 10.0  # issue 17: an epoch at least 10x the reference-style loop
TARGET_RUN_S = 60.0  # and 100 epochs with per-epoch embeddings under a minute
MAX_RETURNED_BYTES = 15 * 2**20  # the device tool returns files up to 16 MiB
SMOKE_LIMITS = (128, 64)  # train / test images in --smoke: seconds per epoch on a CPU
EMBED_BATCHES = (128, 1024, 8192)  # the reference's test batch, cl-analyze's default, one larger


class CheckError(Exception):
    """Bad input to the check: one line saying what and how to fix it."""


@dataclass
class Phase:
    name: str
    seconds: float
    status: str  # ok, failed, skipped, cut
    note: str = ""


@dataclass
class RunSummary:
    """One run as its store holds it."""

    name: str
    epochs: int  # trained epochs (rows - 1)
    final_test_accuracy: float
    peak_test_accuracy: float
    peak_epoch: int
    mean_epoch_s: float  # wall time per trained epoch: training, embedding, writing, checkpoint
    mean_train_s: float
    mean_embed_s: float
    total_s: float  # elapsed_s of the last row: the run's own clock
    embedded_images: int  # images embedded per epoch (train + test)
    precision: str  # as the run resolved it (`auto` becomes fp32 or bf16)


@dataclass
class Results:
    mode: str
    machine: dict[str, str] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    bench: dict[str, float | str] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)
    epochs_asked: int = 0
    epochs_planned: int = 0
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0


# --- the budget ---------------------------------------------------------------------------------


def report_estimate_s(epochs: int, runs: int = 2) -> float:
    return REPORT_FIXED_S + REPORT_PER_EPOCH_S * (epochs + 1) * runs


def plan_epochs(
    asked: int, done: int, softmax_epoch_s: float, seconds_left: float, startup_s: float
) -> int:
    """How many epochs each run gets so both runs and the report end within ``seconds_left``.

    The softmax run has ``done`` epochs already (the probe); it trains the rest, the center run
    trains all of them from scratch at ``CENTER_COST_FACTOR`` times the cost, each run pays
    ``startup_s`` once more. Never fewer than ``done``: the probe's epochs are there anyway."""
    center_epoch_s = softmax_epoch_s * CENTER_COST_FACTOR
    best = done
    for epochs in range(done, asked + 1):
        needed = (
            (epochs - done) * softmax_epoch_s
            + (epochs + 1) * center_epoch_s  # epoch 0 embeds too: about the cost of an epoch
            + 2 * startup_s
            + report_estimate_s(epochs)
        )
        if needed <= seconds_left:
            best = epochs
    return best


class Deadline:
    """Sends this process SIGTERM at a wall-clock time while ``fit`` runs: it then stops within a
    batch and keeps every completed epoch (its Ctrl-C/SIGTERM handling), instead of being cut off
    with nothing. The signal waits until ``fit`` has put in its own handler: before that (while it
    loads the data) SIGTERM would end the process."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False
        self._done = threading.Event()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        outer = signal.getsignal(signal.SIGTERM)
        self._done.clear()

        def watch() -> None:
            while not self._done.wait(0.2):
                # ``at`` is read each time: a caller may move it while training runs.
                due = time.monotonic() >= self.at
                if due and signal.getsignal(signal.SIGTERM) is not outer:  # fit's handler is in
                    self.fired = True
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            self._done.set()
            watcher.join()


# --- the machine --------------------------------------------------------------------------------


def machine_description(device: torch.device) -> dict[str, str]:
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        machine["gpu"] = (
            f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB,"
            f" {properties.multi_processor_count} SMs, compute capability"
            f" {properties.major}.{properties.minor}"
        )
        machine["cuda (torch build)"] = str(torch.version.cuda)
        machine["cudnn"] = str(torch.backends.cudnn.version())
        machine["bf16 supported"] = str(torch.cuda.is_bf16_supported())
        machine["driver"] = _nvidia_smi("driver_version") or "unknown (no nvidia-smi)"
    for name in ("typer", "h5py", "matplotlib", "imageio_ffmpeg", "mlxtend"):
        machine[name] = _version_of(name)
    machine["cl-analyze CLI"] = _cli_importable()
    return machine


def _nvidia_smi(query: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def _version_of(module: str) -> str:
    try:
        imported = importlib.import_module(module)
    except Exception as error:  # an absent or broken optional package: say which
        return f"absent ({type(error).__name__})"
    return str(getattr(imported, "__version__", "present"))


def _cli_importable() -> str:
    """The command line needs Typer 0.29's own click; another Typer breaks only the CLI."""
    try:
        importlib.import_module("cl_analyze.cli")
    except Exception as error:
        return f"does not import here ({type(error).__name__}: {error})"
    return "imports"


# --- phase 1: the CUDA tests --------------------------------------------------------------------


def gpu_test_files() -> list[str]:
    return sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "pytest.mark.gpu" in path.read_text(encoding="utf-8")
    )


def run_gpu_tests(out: Path, timeout_s: float) -> tuple[str, str]:
    """``pytest -m gpu`` in a child process; returns (status, pytest's summary line)."""
    log = out / "pytest-gpu.log"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        # A test module that cannot import here (a package of another version) is reported, and
        # the CUDA tests of the other modules still run.
        "--continue-on-collection-errors",
        *gpu_test_files(),
    ]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(log, "w", encoding="utf-8") as handle:
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "cut", f"stopped after {timeout_s:.0f} s"
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary = next(
        (line.strip("= ") for line in reversed(lines) if re.search(r"passed|failed|error", line)),
        lines[-1] if lines else "no output",
    )
    return ("ok" if done.returncode == 0 else "failed"), summary


# --- phase 2: the training benchmark ------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours_train_rate(dataset: Dataset, device: torch.device, precision: str) -> float:
    config = TrainConfig(
        loss="center", dataset=DATASET, device=str(device), precision=precision, download=False
    )
    state = TrainState.build(config, dataset.num_classes, device)
    _synchronize(device)
    stats = train_one_epoch(state, dataset, config, 1, Reporter(quiet=True))
    _synchronize(device)
    return len(dataset.train) / stats.seconds


def embed_rate(dataset: Dataset, device: torch.device, batch_size: int, precision: str) -> float:
    model = LeNetPlusPlus(num_classes=dataset.num_classes).to(device)
    _synchronize(device)
    start = time.perf_counter()
    for split in (dataset.train, dataset.test):
        evaluate(
            model, split, dataset.mean, dataset.std, batch_size=batch_size, precision=precision
        )
    _synchronize(device)
    return (len(dataset.train) + len(dataset.test)) / (time.perf_counter() - start)


def graphed_train_rate(dataset: Dataset, device: torch.device, batch_size: int = 128) -> float:
    """The lever not in the package: the whole step (forward, both losses, backward, both SGD
    steps) captured once as a CUDA graph and replayed per batch, so the CPU launches one graph
    instead of ~150 kernels. Full batches only (the last partial one would need its own graph)."""
    split = dataset.train
    torch.manual_seed(1)
    model = LeNetPlusPlus(num_classes=dataset.num_classes).to(device)
    center_loss = CenterLoss(dataset.num_classes, 2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    center_optimizer = torch.optim.SGD(center_loss.parameters(), lr=0.5)
    images = split.images[:batch_size].clone()
    labels = split.labels[:batch_size].clone()

    def step() -> None:
        features, logits = model(normalise(images, dataset.mean, dataset.std))
        loss = F.cross_entropy(logits, labels) + center_loss(features, labels)
        loss.backward()
        optimizer.step()
        center_loss.unscale_center_grad(1.0)
        center_optimizer.step()

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up outside the graph: momentum buffers, cuDNN choices
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            center_optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    center_optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    steps = len(split) // batch_size
    order = torch.randperm(len(split), device=device)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for index in range(steps):
        batch = order[index * batch_size : (index + 1) * batch_size]
        torch.index_select(split.images, 0, batch, out=images)
        torch.index_select(split.labels, 0, batch, out=labels)
        graph.replay()
    torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def _embedding(dataset: Dataset, device: torch.device, batch: int) -> Callable[[], float]:
    return lambda: embed_rate(dataset, device, batch, "fp32")


def run_bench(dataset: Dataset, device: torch.device) -> tuple[dict[str, float | str], list[str]]:
    """img/s of each loop on the same images in the same process, and the ratios."""
    from benchmarks.bench_train import reference_epoch

    results: dict[str, float | str] = {"images": float(len(dataset.train))}
    notes: list[str] = []

    def measure(name: str, call: Callable[[], float]) -> None:
        try:
            results[name] = call()
        except Exception as error:  # a lever that fails here is a finding, not the end
            results[name] = f"failed: {type(error).__name__}: {_first_line(error)}"
            notes.append(f"bench {name}: {results[name]}")

    with process_state_restored():
        torch.backends.cudnn.benchmark = True  # as `train` runs without --deterministic
        ours_train_rate(dataset, device, "fp32")  # warm-up: cuDNN picks its kernels
        images = dataset.train.images.cpu().numpy()
        labels = dataset.train.labels.cpu().numpy()
        measure("reference_img_s", lambda: reference_epoch(device, images, labels))
        measure("ours_fp32_img_s", lambda: ours_train_rate(dataset, device, "fp32"))
        if device.type == "cuda":
            measure("ours_bf16_img_s", lambda: ours_train_rate(dataset, device, "bf16"))
        for batch in EMBED_BATCHES if device.type == "cuda" else EMBED_BATCHES[1:2]:
            measure(f"embed_b{batch}_img_s", _embedding(dataset, device, batch))
    add_ratios(results)
    return results, notes


def add_ratios(bench: dict[str, float | str]) -> None:
    baseline = bench.get("reference_img_s")
    for name in ("ours_fp32_img_s", "ours_bf16_img_s", "graphed_fp32_img_s"):
        value = bench.get(name)
        if isinstance(baseline, float) and isinstance(value, float):
            bench[name.replace("_img_s", "_ratio")] = value / baseline


# --- phase 3: the reference experiment ----------------------------------------------------------


def summarise_run(run_dir: Path) -> RunSummary:
    with RunStore(run_dir) as store:
        history = store.history
        epochs = store.epochs
        embedded = sum(len(store.labels(split)) for split in store.splits)
        precision = str(store.config.get("precision", "unknown"))
    accuracy = np.asarray(history["test_accuracy"], dtype=np.float64)
    elapsed = np.asarray(history["elapsed_s"], dtype=np.float64)
    peak = int(np.nanargmax(accuracy))
    trained = len(epochs) - 1
    return RunSummary(
        name=run_dir.name,
        epochs=int(epochs[-1]),
        final_test_accuracy=float(accuracy[-1]),
        peak_test_accuracy=float(accuracy[peak]),
        peak_epoch=int(epochs[peak]),
        mean_epoch_s=float((elapsed[-1] - elapsed[0]) / trained) if trained else math.nan,
        mean_train_s=float(np.mean(history["train_time_s"][1:])) if trained else math.nan,
        mean_embed_s=float(np.mean(history["embed_time_s"][1:])) if trained else math.nan,
        total_s=float(elapsed[-1]),
        embedded_images=int(embedded),
        precision=precision,
    )


def steady_epoch_s(run_dir: Path) -> float:
    """Wall time of one epoch once warm: the mean step of ``elapsed_s`` after epoch 1."""
    with RunStore(run_dir) as store:
        elapsed = np.asarray(store.history["elapsed_s"], dtype=np.float64)
    steps = np.diff(elapsed)
    return float(np.mean(steps[1:]) if len(steps) > 1 else steps[0])


def run_experiment(
    config: TrainConfig, work: Path, deadline: float, results: Results, run_dirs: list[Path]
) -> None:
    """Softmax then center loss, both ending before ``deadline`` less the report's estimate: the
    softmax run's first epochs time an epoch and size both runs."""
    asked = config.epochs
    results.epochs_asked = asked
    softmax_dir, center_dir = work / "softmax", work / "center"
    softmax = config.replace(loss="softmax")
    center = config.replace(loss="center")
    reporter = Reporter(quiet=True)

    def fit_until(stop_at: float, config: TrainConfig, run_dir: Path, *, resume: bool) -> None:
        watchdog = Deadline(stop_at)
        try:
            with watchdog.armed():
                fit(config, run_dir, resume=resume, reporter=reporter)
        except TrainingStopped as stop:
            if not watchdog.fired:
                raise
            results.notes.append(
                f"{run_dir.name}: the budget ran out during training; it stopped after epoch"
                f" {stop.saved_epoch or 0} of {config.epochs}"
            )

    probe = min(PROBE_EPOCHS, asked)
    start = time.monotonic()
    run_dirs.append(softmax_dir)
    fit_until(
        deadline - report_estimate_s(probe),
        softmax.replace(epochs=probe),
        softmax_dir,
        resume=False,
    )
    probe_s = time.monotonic() - start
    epoch_s = steady_epoch_s(softmax_dir)
    with RunStore(softmax_dir) as store:
        startup_s = max(0.0, probe_s - float(store.history["elapsed_s"][-1]))
    planned = plan_epochs(asked, probe, epoch_s, deadline - time.monotonic(), startup_s)
    results.epochs_planned = planned
    if planned < asked:
        results.notes.append(
            f"budget: an epoch took {epoch_s:.2f} s after warm-up, so {asked} epochs per run"
            f" would not fit; both runs train {planned} epochs instead"
        )
    stop_at = deadline - report_estimate_s(planned)
    if planned > probe:
        fit_until(stop_at, softmax.replace(epochs=planned), softmax_dir, resume=True)
    run_dirs.append(center_dir)
    fit_until(stop_at, center.replace(epochs=planned), center_dir, resume=False)


# --- phase 4: the report ------------------------------------------------------------------------


def run_report(runs: Sequence[Path], folder: Path, *, figures: bool, animation: bool) -> Path:
    from cl_analyze.report import ReportOptions, build_report

    options = ReportOptions(out=folder, figures=figures, animation=animation)
    return build_report(list(runs), options, Reporter(quiet=True))


def pack_report(folder: Path, archive: Path) -> str:
    """The report as one ``.tar.gz`` (the device tool returns files, not folders)."""
    partial = partial_path(archive)
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    size = partial.stat().st_size
    if size > MAX_RETURNED_BYTES:
        partial.unlink()
        return f"not packed: {size / 2**20:.1f} MiB is over the 15 MiB the device tool returns"
    os.replace(partial, archive)
    return f"{archive.name} ({size / 2**20:.1f} MiB)"


# --- results ------------------------------------------------------------------------------------


def _img_s(value: float | str | None) -> str:
    return f"{value:,.0f}" if isinstance(value, float) else str(value or "not measured")


def _ratio(value: float | str | None) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "-"


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def render_markdown(results: Results) -> str:
    lines = [f"# GPU check ({results.mode})", ""]
    lines += ["## Machine", "", "| what | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in results.machine.items()]
    lines += ["", "## Phases", "", "| phase | wall time (s) | status | note |"]
    lines.append("| --- | --- | --- | --- |")
    lines += [f"| {p.name} | {p.seconds:.1f} | {p.status} | {p.note} |" for p in results.phases]
    lines += [f"| **total** | {results.wall_s:.1f} | | |", ""]
    bench = results.bench
    if bench:
        images = int(float(bench.get("images", 0)))
        lines += [
            "## Training benchmark",
            "",
            f"One epoch of the same {images:,} training images each, batch 128, LeNet++ with center"
            " loss, in this process. Baseline: the reference-style loop (per-sample Dataset with"
            " PIL + torchvision transforms, DataLoader, distance-matrix center loss, a `.item()`"
            " per step; benchmarks/bench_train.py).",
            "",
            "| loop | img/s | against the reference-style loop |",
            "| --- | --- | --- |",
            f"| reference-style loop, fp32 | {_img_s(bench.get('reference_img_s'))} | 1.00x |",
            f"| cl-analyze `train_one_epoch`, fp32 | {_img_s(bench.get('ours_fp32_img_s'))} |"
            f" {_ratio(bench.get('ours_fp32_ratio'))} |",
            f"| cl-analyze `train_one_epoch`, bf16 | {_img_s(bench.get('ours_bf16_img_s'))} |"
            f" {_ratio(bench.get('ours_bf16_ratio'))} |",
            f"| lever: the whole step as one CUDA graph, fp32 |"
            f" {_img_s(bench.get('graphed_fp32_img_s'))} |"
            f" {_ratio(bench.get('graphed_fp32_ratio'))} |",
            "",
            "| embedding pass (train + test, fp32) | img/s |",
            "| --- | --- |",
        ]
        lines += [
            f"| batch {batch} | {_img_s(bench.get(f'embed_b{batch}_img_s'))} |"
            for batch in EMBED_BATCHES
        ]
        lines.append("")
    if results.runs:
        lines += [
            "## The reference experiment",
            "",
            f"Epochs asked: {results.epochs_asked}; trained: "
            + ", ".join(f"{run.name} {run.epochs} in {run.precision}" for run in results.runs)
            + ". Numbers read back from each run's `run.h5`; an epoch's wall time is the step of"
            " `elapsed_s` (training, embedding every image, writing the row, the checkpoint).",
            "",
            "| run | epochs | final test accuracy | peak test accuracy | peak epoch"
            " | images embedded per epoch | mean epoch (s) | mean training (s)"
            " | mean embedding (s) | run's own clock (s) | the rest: writing, checkpoint (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r.name} | {r.epochs} | {_percent(r.final_test_accuracy)}"
            f" | {_percent(r.peak_test_accuracy)} | {r.peak_epoch} | {r.embedded_images}"
            f" | {_seconds(r.mean_epoch_s)} | {_seconds(r.mean_train_s)}"
            f" | {_seconds(r.mean_embed_s)} | {r.total_s:.1f}"
            f" | {_seconds(r.mean_epoch_s - r.mean_train_s - r.mean_embed_s)} |"
            for r in results.runs
        ]
        lines.append("")
    lines += goal_lines(results)
    if results.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in results.notes] + [""]
    return "\n".join(lines)


def goal_lines(results: Results) -> list[str]:
    """Issue 17's two targets, met or not, from the numbers above (GPU mode only)."""
    if results.mode != "GPU" or not (results.bench or results.runs):
        return []
    lines = ["## The targets", ""]
    for precision in ("fp32", "bf16"):
        ratio = results.bench.get(f"ours_{precision}_ratio")
        if isinstance(ratio, float):
            verdict = "met" if ratio >= TARGET_RATIO else "not met"
            lines.append(
                f"- An epoch >= {TARGET_RATIO:.0f}x faster than the reference-style loop:"
                f" {ratio:.1f}x in {precision}, {verdict}."
            )
    for run in results.runs:
        if math.isnan(run.mean_epoch_s):
            continue
        projected = run.mean_epoch_s * 100
        verdict = "met" if projected < TARGET_RUN_S else "not met"
        lines.append(
            f"- 100 epochs of {run.name} with every epoch's embeddings under"
            f" {TARGET_RUN_S:.0f} s: {projected:.0f} s at {run.mean_epoch_s:.2f} s an epoch"
            f" ({run.epochs} trained), {verdict}."
        )
    return [*lines, ""]


def write_results(out: Path, results: Results) -> None:
    write_text_atomic(out / "results.md", render_markdown(results))
    payload = asdict(results)
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2, default=str) + "\n")


# --- the command --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise CheckError(f"{message}: see `bash benchmarks/gpu_check.sh --help`")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(
        prog="benchmarks/gpu_check.sh",
        description="The GPU check in one call (see benchmarks/RESULTS.md).",
    )
    parser.add_argument(
        "out",
        nargs="?",
        default="gpu-check",
        type=Path,
        help="a new or empty folder for the results (default gpu-check/)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the run stores and the report folder go (default: OUT)",
    )
    parser.add_argument(
        "--data-dir",
        default=str(REPO / "data"),
        help="folder holding fashion-mnist/ (default: the repository's data/)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help=f"wall-clock budget in seconds (default {DEFAULT_BUDGET_S:.0f})",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default 100; --smoke: 2)"
    )
    parser.add_argument(
        "--precision", default=None, help="passed to train (default: train's own default)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CPU, a small subset, 2 epochs, no CUDA tests (what CI runs)",
    )
    args = parser.parse_args(list(argv))
    if args.epochs is not None and args.epochs < 1:
        raise CheckError(f"--epochs must be >= 1, got {args.epochs}")
    if not args.budget_s > 0:
        raise CheckError(f"--budget-s must be > 0, got {args.budget_s}")
    return args


def check_out_folder(out: Path, work: Path) -> None:
    """Never overwrite: OUT must be new or empty, and the run and report folders must be new."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckError(f"{out} exists and is not an empty folder: pass a new folder as OUT")
    for name in ("softmax", "center", "report"):
        if (work / name).exists():
            raise CheckError(f"{work / name} exists: pass another --work-dir (or OUT)")


def check_data(data_dir: str) -> None:
    if find_idx_folder(DATASET, Path(data_dir)) is None:
        raise CheckError(
            f"Fashion-MNIST not found in {data_dir}/{DATASET}/: copy the four .gz files there"
            f" first (mkdir -p {data_dir}/{DATASET} && cp /usr/share/datasets/fashion-mnist/*.gz"
            f" {data_dir}/{DATASET}/, from `apt-get install dataset-fashion-mnist`); on the device"
            f' tool, name it in carry: ["{data_dir}/{DATASET}"]'
        )


def validate(args: argparse.Namespace) -> None:
    """Everything that can fail on bad input, before anything is written."""
    if not args.smoke and not torch.cuda.is_available():
        raise CheckError(
            "CUDA is not available here: run the check on a GPU machine, or --smoke on CPU"
        )
    check_data(args.data_dir)
    check_out_folder(args.out, args.work_dir or args.out)


def check(args: argparse.Namespace, started: float) -> Results:
    """The phases, once ``validate`` passed and OUT exists."""
    out: Path = args.out
    work: Path = args.work_dir or out
    deadline = started + args.budget_s
    device = torch.device("cpu" if args.smoke else "cuda")
    work.mkdir(parents=True, exist_ok=True)
    results = Results(mode="smoke, CPU" if args.smoke else "GPU")
    results.machine = machine_description(device)
    limit_train, limit_test = SMOKE_LIMITS if args.smoke else (None, None)
    epochs = args.epochs or (2 if args.smoke else 100)

    def phase(name: str, action: Callable[[], tuple[str, str]]) -> None:
        begin = time.monotonic()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            status, note = action()
        except Exception as error:  # recorded, and the later phases still run
            if not isinstance(error, CLAnalyzeError):  # its own message says it all
                traceback.print_exc()
            status, note = "failed", f"{type(error).__name__}: {_first_line(error)}"
        results.phases.append(Phase(name, time.monotonic() - begin, status, note))
        results.wall_s = time.monotonic() - started
        print(f"[gpu-check] {name}: {status} {note} ({time.monotonic() - begin:.1f} s)", flush=True)
        write_results(out, results)  # a later crash still leaves what was measured

    def tests() -> tuple[str, str]:
        if args.smoke:
            return "skipped", "--smoke: no CUDA here"
        return run_gpu_tests(out, min(GPU_TESTS_TIMEOUT_S, deadline - time.monotonic()))

    phase("pytest -m gpu", tests)

    loaded: list[Dataset] = []

    def bench() -> tuple[str, str]:
        dataset = load_dataset(
            DATASET, args.data_dir, limit_train=limit_train, limit_test=limit_test, download=False
        ).to(device)
        loaded.append(dataset)
        results.bench, notes = run_bench(dataset, device)
        results.notes += notes
        ratio = results.bench.get("ours_fp32_ratio")
        return ("ok" if not notes else "failed"), f"fp32 loop {_ratio(ratio)} the reference's"

    phase("training benchmark", bench)

    # On CUDA the experiment embeds at the batch size the benchmark found fastest: the default
    # (tuned on CPU) may launch several times more kernels than a GPU needs.
    rates = {b: results.bench.get(f"embed_b{b}_img_s") for b in EMBED_BATCHES}
    measured = {b: rate for b, rate in rates.items() if isinstance(rate, float)}
    eval_batch = TrainConfig().eval_batch_size
    if device.type == "cuda" and measured:
        fastest = max(measured, key=lambda b: measured[b])
        eval_batch = fastest
        results.notes.append(
            f"the experiment embeds in batches of {fastest}, the fastest of the benchmark's"
            f" ({', '.join(f'{b}: {rate:,.0f} img/s' for b, rate in measured.items())})"
        )
    config = TrainConfig(
        dataset=DATASET,
        data_dir=args.data_dir,
        download=False,
        device=str(device),
        epochs=epochs,
        limit_train=limit_train,
        limit_test=limit_test,
        eval_batch_size=eval_batch,
        **({"precision": args.precision} if args.precision else {}),
    )
    run_dirs: list[Path] = []

    def experiment() -> tuple[str, str]:
        try:
            run_experiment(config, work, deadline, results, run_dirs)
        finally:  # what a failed run left is still reported
            results.runs = [summarise_run(run) for run in run_dirs if (run / "run.h5").is_file()]
        trained = min(run.epochs for run in results.runs)
        status = "ok" if trained == epochs else "cut"
        return status, f"{trained} of {epochs} epochs per run"

    phase("reference experiment (softmax, center)", experiment)

    def report() -> tuple[str, str]:
        if len(results.runs) < len(run_dirs) or not run_dirs:
            return "skipped", "the experiment left no complete pair of runs"
        left = deadline - time.monotonic()
        figures = left > report_estimate_s(results.epochs_planned)
        # Without imageio-ffmpeg the report's MP4 cannot be written, and it writes both or none.
        animation = figures and not _version_of("imageio_ffmpeg").startswith("absent")
        index = run_report(run_dirs, work / "report", figures=figures, animation=animation)
        packed = pack_report(index.parent, out / "report.tar.gz")
        parts = [packed]
        if not figures:
            parts.append(f"figures left out: {left:.0f} s were left")
        elif not animation:
            parts.append("no animation: imageio-ffmpeg is absent")
        return "ok", "; ".join(parts)

    phase("report", report)

    def graphed_lever() -> tuple[str, str]:
        if device.type != "cuda" or not loaded:
            return "skipped", "CUDA only"
        if deadline - time.monotonic() < LEVER_S:
            return "skipped", "no time left in the budget"
        with process_state_restored():
            torch.backends.cudnn.benchmark = True
            results.bench["graphed_fp32_img_s"] = graphed_train_rate(loaded[0], device)
        add_ratios(results.bench)
        return "ok", f"{_ratio(results.bench.get('graphed_fp32_ratio'))} the reference's"

    phase("lever: the step as one CUDA graph", graphed_lever)
    return results


@contextlib.contextmanager
def logged_to(log: Path) -> Iterator[None]:
    """Everything this process and its children print also goes to ``log`` (through tee)."""
    sys.stdout.flush()
    sys.stderr.flush()
    tee = subprocess.Popen(["tee", "-a", str(log)], stdin=subprocess.PIPE)
    assert tee.stdin is not None
    saved = os.dup(1), os.dup(2)
    os.dup2(tee.stdin.fileno(), 1)
    os.dup2(tee.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        tee.stdin.close()
        tee.wait()


def main(argv: Sequence[str], *, tee: bool = False) -> int:
    """The check; ``tee`` copies everything printed to OUT/gpu-check.log (the script does)."""
    started = time.monotonic()
    try:
        args = parse_args(argv)
        validate(args)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        log = logged_to(out / "gpu-check.log") if tee else contextlib.nullcontext()
        with log:
            results = check(args, started)
            results.wall_s = time.monotonic() - started
            write_results(out, results)
            failed = [phase.name for phase in results.phases if phase.status == "failed"]
            print(
                f"[gpu-check] done in {results.wall_s:.0f} s: {out / 'results.md'}"
                + (f" ({', '.join(failed)} failed)" if failed else ""),
                flush=True,
            )
    except (CheckError, CLAnalyzeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], tee=True))

"""Animation frames: cl-analyze's FrameRenderer against a new pyplot figure per frame.

Baseline (what a straightforward script does, e.g. the reference repository's --plot): a new
figure each frame, one ``plt.scatter`` per class and panel, titles, legend, draw, grab pixels.
cl-analyze: the figure is built once; a frame restores the saved background, writes the points'
pixels with numpy and draws only centers and titles (``cl_analyze.viz.animate.FrameRenderer``);
with the curve strip (the default) also its cursor and drop annotations, measured against the
frame without it in the same run.

Run: python -m benchmarks.run plots
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from cl_analyze.viz.animate import FrameRenderer, write_animation
from cl_analyze.viz.runs import PlotRun, square_limits
from cl_analyze.viz.style import class_colors, figure_style, robust_limits

POINTS = 10_000
CLASSES = 10


def synthetic_run(name: str, epochs: int, points: int = POINTS, seed: int = 0) -> PlotRun:
    """Ten Gaussian clusters drifting outward over the epochs, both splits, with centers."""
    rng = np.random.default_rng(seed)
    labels = np.arange(points) % CLASSES
    angle = 2 * np.pi * np.arange(CLASSES) / CLASSES
    directions = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    scale = 1.0 + np.arange(epochs)[:, None, None]
    cloud = directions[labels][None] * scale * 3 + rng.normal(size=(epochs, points, 2)) * scale
    cloud = cloud.astype(np.float32)
    centers = (directions[None] * scale * 3).astype(np.float32)
    accuracy = np.linspace(0.1, 0.99, epochs)
    return PlotRun(
        name=name,
        dataset="synthetic",
        class_names=tuple(str(c) for c in range(CLASSES)),
        epochs=np.arange(epochs),
        points={"train": cloud, "test": cloud[:, ::-1].copy()},
        labels={"train": labels, "test": labels[::-1].copy()},
        accuracy={"train": accuracy, "test": accuracy},
        centers=centers,
        history={},
        limits=square_limits(robust_limits(cloud, centers)),
        axis_labels=("feature 0", "feature 1"),
        distances={},
    )


def baseline_frame(runs: list[PlotRun], row: int) -> np.ndarray:
    """A new pyplot figure with per-class scatters, drawn and grabbed."""
    colors = class_colors(CLASSES)
    splits = ("train", "test")
    figure, axes = plt.subplots(
        len(runs), 2, figsize=(3.7, 2.4 * len(runs)), dpi=200, squeeze=False
    )
    for run, row_axes in zip(runs, axes, strict=True):
        for ax, split in zip(row_axes, splits, strict=True):
            points, labels = run.points[split][row], run.labels[split]
            for c in range(CLASSES):
                mine = labels == c
                ax.scatter(points[mine, 0], points[mine, 1], s=1, color=colors[c], label=str(c))
            if run.centers is not None:
                ax.scatter(*run.centers[row].T, marker="X", c=colors, edgecolors="k")
            ax.set_xlim(run.limits[0])
            ax.set_ylim(run.limits[1])
            ax.set_title(f"{run.name} {split} epoch {row}\nacc {run.accuracy[split][row]:.3f}")
    axes[-1][0].legend(ncol=5, loc="upper left", fontsize=5)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(figure)
    return pixels


def mean_seconds(action: Callable[[int], object], repeats: int) -> float:
    action(0)  # warm-up: fonts, caches
    start = time.perf_counter()
    for index in range(repeats):
        action(index + 1)
    return (time.perf_counter() - start) / repeats


def interleaved_medians(
    first: Callable[[int], object], second: Callable[[int], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, timed frame by frame in turn: a load that changes during the
    run (other jobs on a shared machine) weighs on both alike."""
    first(0), second(0)  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for index in range(repeats):
        for action, spent in zip((first, second), times, strict=True):
            start = time.perf_counter()
            action(index % 20)
            spent.append(time.perf_counter() - start)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> None:
    style = figure_style("paper")
    one = [synthetic_run("center", epochs=20)]
    baseline = mean_seconds(lambda i: baseline_frame(one, i % 20), 5)
    start = time.perf_counter()
    renderer = FrameRenderer(one, ("train", "test"), style, strip=False)
    build = time.perf_counter() - start
    striped = FrameRenderer(one, ("train", "test"), style)  # the curve strip: the default
    ours, with_strip = interleaved_medians(renderer.render, striped.render, 40)
    print(f"one 2-panel frame, {POINTS:,} points per panel:")
    print(f"  baseline (new figure, plt.scatter per class): {1000 * baseline:7.1f} ms")
    print(f"  cl-analyze FrameRenderer, --no-strip:        {1000 * ours:7.1f} ms"
          f"  (figure built once in {1000 * build:.0f} ms)")  # fmt: skip
    print(f"  cl-analyze FrameRenderer with the strip:     {1000 * with_strip:7.1f} ms"
          f"  ({with_strip / ours:.2f}x the frame without; budget 50 ms)")  # fmt: skip
    print(f"  speed-up: {baseline / ours:.1f}x (without the strip), {baseline / with_strip:.1f}x"
          " (with)")  # fmt: skip

    runs = [synthetic_run("center", epochs=100, seed=1), synthetic_run("softmax", 100, seed=2)]
    with tempfile.TemporaryDirectory() as folder:
        # Interleaved, the best of two each: the machine's load changes within a minute.
        timings: dict[bool, list[float]] = {True: [], False: []}
        for strip in (False, True, False, True):
            start = time.perf_counter()
            paths = write_animation(
                runs, Path(folder) / "animation", splits=("train", "test"), style=style, strip=strip
            )
            timings[strip].append(time.perf_counter() - start)
            if strip:
                sizes = ", ".join(f"{p.suffix[1:]} {p.stat().st_size / 1e6:.1f} MB" for p in paths)
        animation, plain = min(timings[True]), min(timings[False])
    four_panel = mean_seconds(lambda i: baseline_frame(runs, i % 100), 3)
    print(f"100-frame animation, 4 panels x {POINTS:,} points, strip, GIF + MP4 encoded:")
    print(f"  cl-analyze write_animation: {animation:6.1f} s  ({sizes}; budget 30 s)")
    print(f"  the same with --no-strip:   {plain:6.1f} s  (the strip: {animation / plain:.2f}x;"
          " its frames are taller, so encoding costs more too)")  # fmt: skip
    print(f"  baseline frames alone (100 x {1000 * four_panel:.0f} ms, no encoding):"
          f" {100 * four_panel:6.1f} s")  # fmt: skip
    print(f"  speed-up: {100 * four_panel / animation:.1f}x (baseline without its encoding)")


if __name__ == "__main__":
    main()

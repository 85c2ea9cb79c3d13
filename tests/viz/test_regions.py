"""Decision regions under the scatters: the argmax grid, the static figure and the animation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cl_analyze.store import RunWriter
from cl_analyze.viz.animate import FrameRenderer
from cl_analyze.viz.regions import REGION_ALPHA, load_regions, region_classes
from cl_analyze.viz.runs import load_plot_run
from cl_analyze.viz.scatter import scatter_figure
from cl_analyze.viz.style import class_colors, figure_style

# Class 0 owns x > 1 (weights (+1, 0) and (-1, 0), biases -1 and +1: z0 - z1 = 2x - 2).
WEIGHT = np.array([[1.0, 0.0], [-1.0, 0.0]])
BIAS = np.array([-1.0, 1.0])


def test_region_classes_follow_the_boundary() -> None:
    limits = ((-4.0, 4.0), (-2.0, 2.0))
    classes = region_classes(WEIGHT, BIAS, limits, resolution=8)
    # Cell centres at x = -3.5, -2.5, ..., 3.5: those above 1 (1.5, 2.5, 3.5) are class 0.
    expected = np.where(-3.5 + np.arange(8) > 1, 0, 1)
    assert (classes == expected[None, :]).all()
    assert region_classes(WEIGHT * np.nan, BIAS, limits) is None


def write_run(path: Path, with_classifier: bool = True) -> Path:
    labels = np.array([0, 0, 1, 1])
    points = np.array([[3.0, 1.0], [3.0, -1.0], [-3.0, 1.0], [-3.0, -1.0]])
    with RunWriter.create(
        path / "run.h5",
        dataset="toy",
        class_names=["a", "b"],
        feat_dim=2,
        splits={"test": (labels, np.arange(4))},
        history_names=["test_accuracy"],
        with_centers=False,
        with_classifier=with_classifier,
    ) as writer:
        for epoch in range(2):
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": 1.0},
                features={"test": points},
                predictions={"test": labels},
                classifier=(WEIGHT, BIAS + np.array([-epoch, epoch])),  # boundary x = 1 + epoch
            )
    return path


def tinted(color: np.ndarray) -> np.ndarray:
    """A class colour at REGION_ALPHA over a white background, in 0..255."""
    return 255 * (1 - REGION_ALPHA) + REGION_ALPHA * 255 * color


def pixel_at(renderer_or_canvas_axes, frame: np.ndarray, x: float, y: float) -> np.ndarray:
    column, row = renderer_or_canvas_axes.transData.transform((x, y))
    return frame[int(frame.shape[0] - row), int(column), :3].astype(float)


def test_static_and_animated_scatters_shade_the_regions(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    plot_run = load_plot_run(run)
    regions = [load_regions(run)]
    assert regions[0] is not None and regions[0].bias.shape == (2, 2)
    style = figure_style("paper")
    colors = class_colors(2)
    figure = scatter_figure([plot_run], [1], style=style, regions=regions)
    image = figure.axes[0].images[0]
    (x0, x1), _ = plot_run.limits
    data = np.asarray(image.get_array())
    columns = x0 + (np.arange(data.shape[1]) + 0.5) * (x1 - x0) / data.shape[1]
    # Epoch 1: the boundary is at x = 2; class 0's colour right of it, class 1's left.
    assert np.allclose(data[0, columns > 2.05, :3], colors[0])
    assert np.allclose(data[0, columns < 1.95, :3], colors[1])
    renderer = FrameRenderer([plot_run], ["test"], style, regions=regions)
    try:
        axes = renderer.grid.axes[0][0]
        for epoch, boundary in ((0, 1.0), (1, 2.0)):
            frame = renderer.render(epoch)
            right = pixel_at(axes, frame, boundary + 0.4, 0.0)
            left = pixel_at(axes, frame, boundary - 0.4, 0.0)
            assert right == pytest.approx(tinted(colors[0]), abs=3)
            assert left == pytest.approx(tinted(colors[1]), abs=3)
    finally:
        renderer.close()


def test_a_store_without_a_classifier_has_no_regions(tmp_path: Path) -> None:
    assert load_regions(write_run(tmp_path / "bare", with_classifier=False)) is None


def test_the_cli_draws_regions_in_plot_and_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cl_analyze.cli import app

    run = write_run(tmp_path / "run")
    runner = CliRunner()
    out = tmp_path / "figs"
    result = runner.invoke(
        app,
        ["plot", str(run), "--regions", "--no-animation", "--no-metrics", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert (out / "scatter_last.png").is_file() and (out / "class_accuracy.png").is_file()
    bare = write_run(tmp_path / "bare", with_classifier=False)
    result = runner.invoke(
        app, ["plot", str(bare), "--regions", "--no-animation", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0 and "no run stores a classifier" in result.output
    report = tmp_path / "report"
    result = runner.invoke(
        app, ["report", str(run), "--regions", "--no-animation", "--out", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert (report / "figures" / "scatter_0.png").is_file()

"""The curve strip under the animation: cursor, peaks, drops, held peak frames, uncut titles."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.viz.animate import FrameRenderer, frame_epochs, write_animation
from cl_analyze.viz.runs import PlotRun, square_limits
from cl_analyze.viz.style import figure_style, robust_limits

CLASSES = 3


def planted_run(name: str, accuracy: list[float], points: int = 60, seed: int = 0) -> PlotRun:
    """Three drifting clusters, with ``accuracy`` as its test (and train) accuracy per epoch."""
    rng = np.random.default_rng(seed)
    epochs = len(accuracy)
    labels = np.arange(points) % CLASSES
    angle = 2 * np.pi * np.arange(CLASSES) / CLASSES
    directions = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    scale = 1.0 + np.arange(epochs)[:, None, None]
    cloud = (directions[labels][None] * scale + rng.normal(size=(epochs, points, 2))).astype(
        np.float32
    )
    curve = np.asarray(accuracy, dtype=np.float64)
    return PlotRun(
        name=name,
        dataset="synthetic",
        class_names=tuple(str(c) for c in range(CLASSES)),
        epochs=np.arange(epochs),
        points={"test": cloud},
        labels={"test": labels},
        accuracy={"test": curve, "train": curve},
        centers=None,
        history={"lr": np.where(np.arange(epochs) < 4, 0.01, 0.005)},
        limits=square_limits(robust_limits(cloud)),
        axis_labels=("feature 0", "feature 1"),
        distances={},
    )


LONG = [0.2, 0.6, 0.8, 0.9, 0.95, 0.97, 0.96, 0.94, 0.93]  # peak at epoch 5
SHORT = [0.3, 0.5, 0.97, 0.96, 0.95]  # peak at epoch 2, ends at epoch 4


@pytest.fixture(scope="module")
def renderer() -> FrameRenderer:
    runs = [planted_run("long", LONG), planted_run("short", SHORT, seed=1)]
    return FrameRenderer(runs, ("test",), figure_style("paper"))


def test_cursor_follows_every_frame_and_curves_end_where_runs_end(
    renderer: FrameRenderer,
) -> None:
    strip = renderer.strip
    assert strip is not None
    epochs = frame_epochs(renderer.grid.runs)
    assert epochs == list(range(len(LONG)))
    for epoch in epochs:
        renderer.render(epoch)
        assert list(strip.cursor.get_xdata()) == [epoch, epoch]  # type: ignore[arg-type]
    long_curve, short_curve = strip.curves
    np.testing.assert_array_equal(long_curve.get_xdata(), np.arange(len(LONG)))
    np.testing.assert_array_equal(short_curve.get_xdata(), np.arange(len(SHORT)))
    np.testing.assert_allclose(short_curve.get_ydata(), SHORT)


def test_peak_markers_sit_at_each_runs_peak(renderer: FrameRenderer) -> None:
    assert renderer.strip is not None
    for marker, accuracy in zip(renderer.strip.peaks, (LONG, SHORT), strict=True):
        peak = int(np.argmax(accuracy))  # independent: the first maximum
        assert list(marker.get_xdata()) == [peak]  # type: ignore[arg-type]
        assert list(marker.get_ydata()) == pytest.approx([accuracy[peak]])  # type: ignore[arg-type]
    renderer.render(0)
    labels = [t.get_text() for t in renderer.strip.axes.texts if t.get_text().startswith("peak")]
    assert labels == ["peak 97.0% @ 5", "peak 97.0% @ 2"]


def test_the_drop_since_the_peak_is_shaded_and_labelled(renderer: FrameRenderer) -> None:
    strip = renderer.strip
    assert strip is not None
    long_drop = strip.moving[0]
    long_text, short_text = strip.moving[3:]
    renderer.render(5)  # long at its peak, short 3 epochs past its own
    assert long_text.get_text() == "peak 97.0% @ 5"
    assert not long_drop.get_paths()  # type: ignore[attr-defined]
    drop = 100 * (SHORT[2] - SHORT[4])
    assert short_text.get_text() == f"peak 97.0% @ 2, now -{drop:.2f} points"
    renderer.render(8)
    assert long_text.get_text() == f"peak 97.0% @ 5, now -{100 * (LONG[5] - LONG[8]):.2f} points"
    # The shaded area spans the peak to the frame's epoch, between the peak level and the curve.
    vertices = long_drop.get_paths()[0].vertices  # type: ignore[attr-defined]
    assert vertices[:, 0].min() == 5 and vertices[:, 0].max() == 8
    assert vertices[:, 1].max() == pytest.approx(LONG[5])
    assert vertices[:, 1].min() == pytest.approx(LONG[8])


def test_peak_frames_say_peak_in_their_titles(renderer: FrameRenderer) -> None:
    renderer.render(5)
    long_title, short_title = (title.get_text() for *_, title in renderer.grid.panels())
    assert long_title.startswith("long · test · epoch 5 · peak")
    assert "peak" not in short_title  # short holds epoch 4, past its peak
    renderer.render(4)
    assert "peak" not in renderer.grid.titles[0][0].get_text()


@pytest.mark.parametrize("strip", [True, False])
def test_no_title_is_cut_off_in_any_frame(strip: bool) -> None:
    # One run, two lines of title: the layout that used to cut the top line in half.
    run = planted_run("run1", LONG)
    renderer = FrameRenderer([run], ("test",), figure_style("slides"), strip=strip)
    width, height = renderer.size
    for epoch in frame_epochs([run]):
        frame = renderer.render(epoch)
        x0, y0, x1, y1 = renderer.grid.titles[0][0].get_window_extent().extents
        assert x0 >= 0 and x1 <= width and y0 >= 0 and y1 <= height, (epoch, y1, height)
        # And in the pixels: the top rows are blank, so no text runs through them.
        assert (frame[:2] == 255).all()


def test_strip_keeps_the_frame_count_and_hold_peak_only_lengthens(tmp_path: Path) -> None:
    runs = [planted_run("long", LONG), planted_run("short", SHORT, seed=1)]
    style = figure_style("paper")
    plain = write_animation(runs, tmp_path / "plain", splits=("test",), style=style, strip=False)
    held = write_animation(
        runs, tmp_path / "held", splits=("test",), style=style, fps=4.0, hold_peak=1.0
    )
    for path in (plain[0], held[0]):
        with Image.open(path) as gif:
            assert gif.n_frames == len(LONG)
    with Image.open(held[0]) as gif:
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
    # Peaks at epochs 2 and 5: 1 s longer than the 250 ms step; the last frame lingers anyway.
    assert durations[2] == durations[5] == 1250
    assert durations[0] == durations[1] == durations[3] == 250
    reader = imageio_ffmpeg.read_frames(str(held[1]))
    next(reader)
    assert len(list(reader)) == len(LONG) + 2 * 4  # each held peak repeats 4 frames at 4 fps


def test_an_unknown_strip_metric_is_one_line() -> None:
    run = planted_run("run1", LONG)
    with pytest.raises(CLAnalyzeError, match=r"--strip-metric 'silhouette': no run has it"):
        FrameRenderer([run], ("test",), figure_style("paper"), strip_metric="silhouette")


def test_plot_refuses_a_bad_strip_metric_and_hold_before_drawing(tmp_path: Path) -> None:
    from test_plot import write_store
    from typer.testing import CliRunner

    from cl_analyze.cli import app

    run = write_store(tmp_path / "run", epochs=2)
    out = tmp_path / "plots"
    result = CliRunner().invoke(
        app, ["plot", str(run), "--out", str(out), "--no-metrics", "--strip-metric", "fisher"]
    )
    assert isinstance(result.exception, CLAnalyzeError)
    assert "--strip-metric 'fisher': no run has it" in str(result.exception)
    assert not out.exists()  # refused before any figure was drawn
    result = CliRunner().invoke(app, ["plot", str(run), "--out", str(out), "--hold-peak", "-1"])
    assert isinstance(result.exception, CLAnalyzeError) and "--hold-peak" in str(result.exception)

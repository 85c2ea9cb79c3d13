"""Animations: a frame per epoch, GIF and MP4 that read back, points where matplotlib puts them."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from test_plot import write_store

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.viz import load_plot_run
from cl_analyze.viz.animate import (
    FrameRenderer,
    PaletteMapper,
    frame_epochs,
    frequent_colors,
    write_animation,
)
from cl_analyze.viz.style import class_colors, figure_style


def test_frame_epochs_are_the_union_of_the_runs_epochs(tmp_path: Path) -> None:
    first = load_plot_run(write_store(tmp_path / "a", epochs=3))
    later = load_plot_run(write_store(tmp_path / "b", epochs=3, first_epoch=2))
    assert frame_epochs([first, later]) == [0, 1, 2, 3, 4]


def test_gif_and_mp4_have_one_frame_per_epoch_and_read_back(tmp_path: Path) -> None:
    long = load_plot_run(write_store(tmp_path / "long", epochs=4))
    short = load_plot_run(write_store(tmp_path / "short", epochs=2, with_centers=False))
    paths = write_animation(
        [long, short], tmp_path / "anim", splits=("train", "test"), style=figure_style("paper")
    )
    assert [p.name for p in paths] == ["anim.gif", "anim.mp4"]
    renderer = FrameRenderer([long, short], ("train", "test"), figure_style("paper"))
    width, height = renderer.size
    assert width % 2 == 0 and height % 2 == 0

    gif = iio.imread(tmp_path / "anim.gif", index=None)
    assert gif.shape[:3] == (4, height, width)
    # The palette keeps white and every class colour exact; only rare anti-aliasing shades of
    # the text may move to their nearest palette colour.
    expected = renderer.render(3)
    last = gif[-1][..., :3]
    exact = np.round(255 * np.vstack([class_colors(4), np.ones((1, 3))])).astype(np.uint8)
    keyed = (expected[..., None, :] == exact).all(axis=-1).any(axis=-1)
    assert keyed.sum() > 0.5 * keyed.size
    np.testing.assert_array_equal(last[keyed], expected[keyed])
    assert (last == expected).all(axis=-1).mean() > 0.99

    reader = imageio_ffmpeg.read_frames(str(tmp_path / "anim.mp4"))
    meta = next(reader)
    frames = list(reader)
    assert meta["size"] == (width, height)
    assert len(frames) == 4


def test_shorter_run_holds_its_last_frame(tmp_path: Path) -> None:
    long = load_plot_run(write_store(tmp_path / "long", epochs=4))
    short = load_plot_run(write_store(tmp_path / "short", epochs=2))
    renderer = FrameRenderer([long, short], ("test",), figure_style("paper"))
    renderer.render(3)
    titles = [panel[4].get_text() for panel in renderer.grid.panels()]
    assert titles[0].startswith("long · test · epoch 3")
    assert titles[1].startswith("short · test · epoch 1")


def class_centroids(frame: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(C, 2) mean pixel position of the pixels that have exactly each class colour."""
    rgb = np.round(255 * colors).astype(np.uint8)
    centroids = []
    for color in rgb:
        rows, cols = np.nonzero((frame[..., :3] == color).all(axis=-1))
        centroids.append([rows.mean(), cols.mean()])
    return np.asarray(centroids)


def test_painted_points_land_where_matplotlib_draws_them(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "r", epochs=2, with_centers=False, per_class=200))
    style = figure_style("paper")
    renderer = FrameRenderer([run], ("test",), style)
    painted = renderer.render(1).copy()
    # Independent reference: matplotlib draws the same figure (same layout, strip included)
    # with its own scatter, every artist drawn the ordinary way instead of blitted.
    reference = renderer.grid
    for artist in reference.figure.findobj():
        artist.set_animated(False)
    reference.figure.canvas.draw()
    drawn = np.asarray(reference.figure.canvas.buffer_rgba())  # type: ignore[attr-defined]
    colors = class_colors(run.num_classes)
    # Legend swatches carry the class colours too: compare inside the axes only.
    x0, y0, x1, y1 = reference.axes[0][0].get_window_extent().extents
    height = drawn.shape[0]
    box = (slice(int(height - y1) + 2, int(height - y0) - 2), slice(int(x0) + 2, int(x1) - 2))
    ours = class_centroids(painted[box], colors)
    theirs = class_centroids(drawn[box], colors)
    np.testing.assert_allclose(ours, theirs, atol=1.5)


def test_palette_mapper_is_exact_for_palette_colours_and_nearest_otherwise() -> None:
    rng = np.random.default_rng(0)
    frame = np.full((20, 30, 3), 255, dtype=np.uint8)
    frame[:5] = [0, 114, 178]
    frame[5:7] = [250, 250, 250]
    frame[7, :3] = [1, 113, 180]  # rare: outside a palette of the 3 commonest colours
    palette = frequent_colors(frame, size=3)
    assert palette.tolist() == [[255, 255, 255], [0, 114, 178], [250, 250, 250]]
    mapper = PaletteMapper(palette)
    index = mapper(frame)
    np.testing.assert_array_equal(palette[index][8:], frame[8:])  # exact, white stays white
    assert palette[index[7, 0]].tolist() == [0, 114, 178]  # nearest by brute force below
    noise = rng.integers(0, 256, size=(50, 3), dtype=np.uint8)
    brute = ((noise[:, None].astype(int) - palette[None].astype(int)) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(mapper(noise[None])[0], brute)


def test_bad_animation_options_are_refused(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "r", epochs=1))
    style = figure_style("paper")
    with pytest.raises(CLAnalyzeError, match="animation format"):
        write_animation([run], tmp_path / "a", splits=("test",), style=style, formats=("avi",))
    with pytest.raises(CLAnalyzeError, match="frame rate"):
        write_animation([run], tmp_path / "a", splits=("test",), style=style, fps=0)

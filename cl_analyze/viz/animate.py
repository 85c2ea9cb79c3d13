"""Side-by-side animations: one frame per epoch of a runs x splits scatter grid, as GIF and MP4.

Speed comes from building the figure once (``scatter.ScatterGrid``) and blitting: axes, ticks and
legend are drawn once into a saved background; each frame restores it, writes the points' pixels
with numpy and has matplotlib draw only the centers and titles. Frames stream to the encoders
one at a time: the MP4 goes straight into ffmpeg's pipe; the GIF keeps each frame as a 1-byte-per-
pixel palette image, since Pillow writes a GIF only once it has every frame.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from cl_analyze.atomic import atomic_path, partial_path
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.progress import Reporter
from cl_analyze.viz.regions import Regions
from cl_analyze.viz.runs import PlotRun
from cl_analyze.viz.scatter import ScatterGrid
from cl_analyze.viz.strip import CurveStrip, check_strip_metric
from cl_analyze.viz.style import FigureStyle, fit_height, run_colors

ANIMATION_FORMATS = ("gif", "mp4")
LAST_FRAME_HOLD_S = 1.5  # the GIF lingers on the final epoch before looping


def strip_height(style: FigureStyle, metric: str | None) -> float:
    """Inches of the curve strip: readable ticks and labels, a fraction of a panel."""
    return 0.42 * style.panel + 0.25 + (0.1 if metric else 0.0)


def peak_epochs(runs: Sequence[PlotRun]) -> set[int]:
    """The epochs at which some run peaks (frames that ``--hold-peak`` holds)."""
    return {int(run.epochs[run.peak_row]) for run in runs}


def frame_epochs(runs: Sequence[PlotRun]) -> list[int]:
    """Every epoch any run completed, in order: one frame each (shorter runs hold)."""
    return sorted({int(epoch) for run in runs for epoch in run.epochs})


class PanelSplat:
    """Paints one panel's points straight into the canvas pixels (a small disc per point).

    Matplotlib draws a collection with per-point colours at ~5 us a point; writing the pixels
    with numpy costs ~0.1 us, keeps the random drawing order (no class always on top) and
    clips to the axes like matplotlib does. Valid while the layout and limits stay fixed.
    """

    def __init__(
        self, axes: Axes, labels: np.ndarray, colors: np.ndarray, radius_px: float, height: int
    ) -> None:
        self._transform = axes.transData
        x0, y0, x1, y1 = axes.get_window_extent().extents
        # Keep one pixel clear of the spines so the points never paint over the axes lines.
        self._cols = (int(np.ceil(x0)) + 1, int(np.floor(x1)) - 1)
        self._rows = (int(np.ceil(height - y1)) + 1, int(np.floor(height - y0)) - 1)
        self._height = height
        span = int(np.ceil(radius_px))
        dy, dx = np.mgrid[-span : span + 1, -span : span + 1]
        disc = dx**2 + dy**2 <= max(radius_px, 0.5) ** 2
        self._dy, self._dx = dy[disc], dx[disc]
        rgba = np.concatenate([colors, np.ones((len(colors), 1))], axis=1)
        # One uint32 per RGBA pixel: a point's colour is written in one store, not four.
        self._colors = np.round(255 * rgba[labels]).astype(np.uint8).view(np.uint32)[:, 0]

    def paint(self, pixels: np.ndarray, points: np.ndarray) -> None:
        """Draw ``points`` (n, 2) in data coordinates into ``pixels`` (H, W, 4), in order."""
        display = self._transform.transform(points)
        drawn = np.isfinite(display).all(axis=1)  # a diverged run's NaN points vanish
        x = np.floor(display[drawn, 0]).astype(np.int32)
        y = np.floor(self._height - display[drawn, 1]).astype(np.int32)
        cols = x[:, None] + self._dx  # (n, k): each point's pixels stay together, in order
        rows = y[:, None] + self._dy
        inside = (
            (cols >= self._cols[0])
            & (cols <= self._cols[1])
            & (rows >= self._rows[0])
            & (rows <= self._rows[1])
        )
        flat = rows[inside].astype(np.intp) * pixels.shape[1] + cols[inside]
        colors = np.broadcast_to(self._colors[drawn, None], inside.shape)[inside]
        # With repeated pixels numpy keeps the last write, so later points land on top.
        pixels.view(np.uint32).reshape(-1)[flat] = colors


class FrameRenderer:
    """Renders a frame per epoch: (H, W, 3) uint8 with H and W even (what H.264 needs).

    Axes, ticks and legend are drawn once into a saved background; a frame restores it, paints
    the points with ``PanelSplat`` and lets matplotlib draw only the centers and titles. With
    ``strip`` a ``CurveStrip`` of the runs' test accuracy sits under the grid; per frame only its
    cursor and drop annotations are drawn.
    """

    def __init__(
        self,
        runs: Sequence[PlotRun],
        splits: Sequence[str],
        style: FigureStyle,
        *,
        dpi: float | None = None,
        strip: bool = True,
        strip_metric: str | None = None,
        regions: Sequence[Regions | None] | None = None,
    ) -> None:
        check_strip_metric(runs, strip_metric)
        self.grid = ScatterGrid(
            runs,
            splits,
            style,
            animated=True,
            dpi=dpi,
            strip_height=strip_height(style, strip_metric) if strip else 0.0,
            regions=regions,
        )
        figure = self.grid.figure
        canvas = figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        self.strip: CurveStrip | None = None
        if self.grid.strip_axes is not None:
            with style.context():
                self.strip = CurveStrip(
                    self.grid.strip_axes, runs, run_colors(len(runs)), metric=strip_metric
                )
        # Lay out once with real titles in place (the figure grows until none is cut off),
        # then freeze it so every frame matches.
        first = frame_epochs(runs)[0]
        self.grid.show_epoch(first)
        if self.strip is not None:
            self.strip.show_epoch(first)
        fit_height(figure)
        figure.set_layout_engine("none")
        canvas.draw()
        self._canvas = canvas
        self._background = canvas.copy_from_bbox(figure.bbox)
        width, height = canvas.get_width_height()
        radius = np.sqrt(style.marker_size) / 2 * figure.dpi / 72
        self._splats = [
            PanelSplat(axes, run.labels[split], self.grid.colors, radius, height)
            if split in run.points
            else None
            for run, split, axes, _, _ in self.grid.panels()
        ]
        self.width, self.height = width + width % 2, height + height % 2
        self._frame = np.full((self.height, self.width, 3), 255, dtype=np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    def render(self, epoch: int) -> np.ndarray:
        """The frame at ``epoch``; the returned array is reused by the next call."""
        self.grid.show_epoch(epoch)
        if self.strip is not None:
            self.strip.show_epoch(epoch)
        canvas = self._canvas
        canvas.restore_region(self._background)
        for layers in self.grid.region_layers:  # under the points: drawn before they are painted
            for layer in layers:
                if layer is not None:
                    self.grid.figure.draw_artist(layer.image)
        pixels = np.asarray(canvas.buffer_rgba())
        for (run, split, _, centers, title), splat in zip(
            self.grid.panels(), self._splats, strict=True
        ):
            if splat is not None:
                splat.paint(pixels, run.points[split][run.row_at(epoch)])
            if centers is not None:
                self.grid.figure.draw_artist(centers)
            self.grid.figure.draw_artist(title)
        if self.strip is not None:
            for artist in self.strip.moving:
                self.grid.figure.draw_artist(artist)
        self._frame[: pixels.shape[0], : pixels.shape[1]] = pixels[..., :3]
        return self._frame

    def close(self) -> None:
        self.grid.figure.clear()


class FrameSink(Protocol):
    """An encoder writing ``path`` whole or not at all: frames go to a partial file that
    ``close`` renames into place and ``abort`` removes (any earlier file at ``path`` stays)."""

    path: Path

    def add(self, frame: np.ndarray, frames: int = 1) -> None:
        """Show ``frame`` for ``frames`` frame durations (a held frame)."""

    def close(self) -> None: ...

    def abort(self) -> None: ...


class GifSink:
    """Palette frames for Pillow, which writes a GIF only once it has them all (1 byte a pixel).

    The palette is the first frame's 256 most frequent colours (white, black, every class colour
    from the legend and the points, the text's greys): colours stay exact and stable from frame
    to frame, and mapping a frame onto it is a table look-up.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self._mapper: PaletteMapper | None = None
        self._frames: list[Image.Image] = []
        self._lengths: list[int] = []  # frame durations each image is shown
        self._partial = partial_path(path)

    def add(self, frame: np.ndarray, frames: int = 1) -> None:
        if self._mapper is None:
            self._mapper = PaletteMapper(frequent_colors(frame))
        image = Image.fromarray(self._mapper(frame), mode="P")
        image.putpalette(self._mapper.palette_bytes)
        self._frames.append(image)
        self._lengths.append(frames)

    def close(self) -> None:
        if not self._frames:
            return
        step_ms = 1000.0 / self.fps
        durations = [step_ms * length for length in self._lengths]
        durations[-1] = max(durations[-1], 1000 * LAST_FRAME_HOLD_S)
        first, *rest = self._frames
        self._frames = []
        with atomic_path(self.path) as temporary:
            first.save(
                temporary,
                format="GIF",
                save_all=True,
                append_images=rest,
                duration=durations,
                loop=0,
                optimize=False,
            )

    def abort(self) -> None:
        self._frames = []
        self._partial.unlink(missing_ok=True)


def _rgb_keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def frequent_colors(frame: np.ndarray, size: int = 256) -> np.ndarray:
    """(P <= size, 3) uint8: the most frequent colours of an (H, W, 3) frame, commonest first."""
    keys, counts = np.unique(_rgb_keys(frame).ravel(), return_counts=True)
    top = keys[np.argsort(-counts, kind="stable")[:size]]
    return np.stack([(top >> 16) & 255, (top >> 8) & 255, top & 255], axis=1).astype(np.uint8)


class PaletteMapper:
    """Exact RGB -> palette index: a palette colour maps to itself, any other to its nearest.

    Pillow's own palette mapping rounds colours through a coarse cache (white can come out as
    250 grey); a full 2^24 look-up table, filled lazily for new colours, is exact and fast.
    """

    def __init__(self, colors: np.ndarray) -> None:
        self.colors = np.asarray(colors, dtype=np.uint8)
        self._table = np.full(1 << 24, -1, dtype=np.int16)
        self._table[_rgb_keys(self.colors)] = np.arange(len(self.colors))

    @property
    def palette_bytes(self) -> bytes:
        padded = np.zeros((256, 3), dtype=np.uint8)
        padded[: len(self.colors)] = self.colors
        return padded.tobytes()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        keys = _rgb_keys(frame)
        index = self._table[keys]
        missing = index < 0
        if missing.any():
            new_keys = np.unique(keys[missing])
            new_rgb = np.stack([(new_keys >> 16) & 255, (new_keys >> 8) & 255, new_keys & 255], 1)
            distance = ((new_rgb[:, None, :] - self.colors[None].astype(np.int32)) ** 2).sum(-1)
            self._table[new_keys] = distance.argmin(axis=1)
            index = self._table[keys]
        return index.astype(np.uint8)


class Mp4Sink:
    """H.264 through the ffmpeg binary bundled with imageio-ffmpeg (works offline)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        import imageio_ffmpeg

        self.path = path
        self._partial = partial_path(path)  # keeps .mp4: ffmpeg picks the container by it
        self._writer: Any = imageio_ffmpeg.write_frames(
            str(self._partial),
            size,
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-crf", "23", "-preset", "veryfast", "-movflags", "+faststart"],
        )
        self._writer.send(None)  # start ffmpeg

    def add(self, frame: np.ndarray, frames: int = 1) -> None:
        contiguous = np.ascontiguousarray(frame)
        for _ in range(frames):  # a constant frame rate: holding repeats the frame
            self._writer.send(contiguous)

    def close(self) -> None:
        try:
            self._writer.close()  # waits for ffmpeg to finish the file
            os.replace(self._partial, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        # ffmpeg may already have failed (a full disk): its partial file goes anyway.
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()
        self._partial.unlink(missing_ok=True)


def write_animation(
    runs: Sequence[PlotRun],
    stem: Path,
    *,
    splits: Sequence[str],
    style: FigureStyle,
    formats: Sequence[str] = ANIMATION_FORMATS,
    fps: float = 8.0,
    dpi: float | None = None,
    reporter: Reporter | None = None,
    strip: bool = True,
    strip_metric: str | None = None,
    hold_peak: float = 0.0,
    frame_sink: FrameSink | None = None,
    regions: Sequence[Regions | None] | None = None,
) -> list[Path]:
    """Write ``stem.gif`` and/or ``stem.mp4``: one frame per epoch from the first to the last,
    with the curve strip unless ``strip`` is False; a run's peak frame is shown ``hold_peak``
    seconds longer. ``frame_sink`` also receives every frame (the report's scrubber images);
    ``regions`` (per run) shades the classifier's decision regions."""
    unknown = [f for f in formats if f not in ANIMATION_FORMATS]
    if unknown:
        raise CLAnalyzeError(
            f"animation format {unknown[0]!r}: use {' or '.join(ANIMATION_FORMATS)}"
        )
    if fps <= 0:
        raise CLAnalyzeError(f"--fps {fps}: give a positive frame rate")
    if not hold_peak >= 0:
        raise CLAnalyzeError(f"--hold-peak {hold_peak}: give seconds >= 0")
    stem.parent.mkdir(parents=True, exist_ok=True)
    epochs = frame_epochs(runs)
    held = peak_epochs(runs)
    hold_frames = 1 + round(hold_peak * fps)
    renderer = FrameRenderer(
        runs, splits, style, dpi=dpi, strip=strip, strip_metric=strip_metric, regions=regions
    )
    sinks: list[FrameSink] = []
    try:
        for extension in dict.fromkeys(formats):
            path = stem.with_suffix(f".{extension}")
            sinks.append(
                GifSink(path, fps) if extension == "gif" else Mp4Sink(path, renderer.size, fps)
            )
        if frame_sink is not None:
            sinks.append(frame_sink)
        if reporter is not None:
            reporter.start("animation", total=len(epochs))
        for epoch in epochs:
            frame = renderer.render(epoch)
            for sink in sinks:
                sink.add(frame, hold_frames if epoch in held else 1)
            if reporter is not None:
                reporter.advance()
    except BaseException:
        # An interrupted animation must not be left looking complete.
        for sink in sinks:
            sink.abort()
        raise
    finally:
        renderer.close()
    for sink in sinks:
        sink.close()
    if reporter is not None:
        for sink in sinks:
            reporter.log(f"wrote {sink.path} ({len(epochs)} frames)")
    return [sink.path for sink in sinks if sink is not frame_sink]

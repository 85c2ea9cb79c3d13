"""The report's epoch scrubber: the animation's frames as images, and the words of each frame.

The frames are the animation's own (one render feeds the GIF, the MP4 and these files), saved as
palette PNGs: exact colours at a fraction of an RGB PNG's size and encoding time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cl_analyze.report.document import Scrubber, ScrubberFrame

if TYPE_CHECKING:
    from cl_analyze.viz.animate import PaletteMapper
    from cl_analyze.viz.runs import PlotRun


FRAMES = "frames"


class ScrubberFrames:
    """A frame sink (``viz.animate.FrameSink``) writing ``<folder>/<relative>/frames/NNN.png``.

    It writes inside the report's temporary folder, which is swapped in whole or not at all, so
    the files themselves need no atomic rename; ``abort`` leaves them to that folder's removal.
    """

    def __init__(self, folder: Path, relative: str, epochs: Sequence[int]) -> None:
        self.relative = f"{relative}/{FRAMES}"
        self.path = folder / self.relative
        self.path.mkdir(parents=True, exist_ok=True)
        self._epochs = list(epochs)
        self._next = 0
        self._mapper: PaletteMapper | None = None
        self.names: list[str] = []

    def add(self, frame: np.ndarray, frames: int = 1) -> None:
        from PIL import Image

        from cl_analyze.viz.animate import PaletteMapper, frequent_colors

        if self._mapper is None:
            self._mapper = PaletteMapper(frequent_colors(frame))
        image = Image.fromarray(self._mapper(frame), mode="P")
        image.putpalette(self._mapper.palette_bytes)
        name = f"epoch{self._epochs[self._next]:03d}.png"
        # Level 1: these are flat-colour images; higher levels cost time for a few percent.
        image.save(self.path / name, format="PNG", compress_level=1)
        self.names.append(f"{self.relative}/{name}")
        self._next += 1

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def frame_words(runs: Sequence[PlotRun], epoch: int) -> str:
    """ "epoch 12 · center: test 96.1%, silhouette 0.66 (peak) · softmax: ..." for one frame."""
    from cl_analyze.viz.style import short_percent

    parts = [f"epoch {epoch}"]
    for run in runs:
        row = run.row_at(epoch)
        words = f"{run.name}: test {short_percent(float(run.accuracy_curve('test')[row]))}"
        silhouette = float(run.metric_curve("test", "silhouette")[row])
        if np.isfinite(silhouette):
            words += f", silhouette {silhouette:.2f}"
        if int(run.epochs[row]) != epoch:
            words += f" (held at epoch {int(run.epochs[row])})"
        elif row == run.peak_row:
            words += " (peak)"
        parts.append(words)
    return " · ".join(parts)


def scrubber_block(
    runs: Sequence[PlotRun], epochs: Sequence[int], frames: ScrubberFrames, caption: str
) -> Scrubber:
    return Scrubber(
        tuple(
            ScrubberFrame(name, frame_words(runs, epoch))
            for name, epoch in zip(frames.names, epochs, strict=True)
        ),
        caption,
    )

"""The curve strip under an animation's scatters: where each frame sits on the accuracy curves.

Every run's test accuracy on one shared epoch axis, its peak starred and labelled, its learning-
rate steps as faint lines; these are drawn once into the animation's background. Per frame only
the cursor at the current epoch, the drop since each run's peak (shaded, "-0.42 points") and the
current values move, so the strip costs a few artists per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import blended_transform_factory, offset_copy

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.viz.curves import lr_steps
from cl_analyze.viz.runs import PlotRun
from cl_analyze.viz.style import short_percent

STRIP_SPLIT = "test"
LABEL_ROW = 0.17  # the peak labels' rows at the top of the strip, in axes fractions
ZOOM = 0.10  # the strip's accuracy axis starts 10 points below the peaks (or lower if needed)


def strip_metric_names(runs: Sequence[PlotRun]) -> list[str]:
    """Whole-split test metrics any run has: the choices of ``--strip-metric``."""
    names: set[str] = set()
    for run in runs:
        if run.metrics is not None and not run.metrics.empty:
            frame = run.metrics
            names |= set(
                frame.loc[(frame["split"] == STRIP_SPLIT) & (frame["class"] == ""), "metric"]
            )
    return sorted(names)


def check_strip_metric(runs: Sequence[PlotRun], metric: str | None) -> None:
    if metric is None:
        return
    known = strip_metric_names(runs)
    if metric not in known:
        listing = ", ".join(known) if known else "none (compute metrics: drop --no-metrics)"
        raise CLAnalyzeError(f"--strip-metric {metric!r}: no run has it; available: {listing}")


def drop_points(run: PlotRun, row: int) -> float:
    """Percentage points lost since the run's peak, at ``row`` (0 before or at the peak)."""
    curve = run.accuracy_curve(STRIP_SPLIT)
    peak = run.peak_row
    if row <= peak or not np.isfinite(curve[row]):
        return 0.0
    return float(100 * (curve[peak] - curve[row]))


class CurveStrip:
    """Accuracy curves of ``runs`` in ``axes``; ``show_epoch`` moves the cursor and the drops.

    The moving artists are created with ``animated=True``: a blitting caller draws the static
    part once and ``draw_artist``s ``moving`` each frame.
    """

    def __init__(
        self,
        axes: Axes,
        runs: Sequence[PlotRun],
        colors: np.ndarray,
        *,
        metric: str | None = None,
        animated: bool = True,
    ) -> None:
        self.axes = axes
        self.runs = list(runs)
        self.metric = metric
        first = min(int(run.epochs[0]) for run in self.runs)
        last = max(int(run.epochs[-1]) for run in self.runs)
        self.curves: list[Line2D] = []
        self.peaks: list[Line2D] = []
        self._drops: list[PolyCollection] = []
        self._drop_texts: list[Text] = []  # each run's peak label, with its drop once past it
        self._peak_words: list[str] = []
        for index, (run, color) in enumerate(zip(self.runs, colors, strict=True)):
            accuracy = run.accuracy_curve(STRIP_SPLIT)
            (curve,) = axes.plot(run.epochs, accuracy, color=color, lw=1.0)
            self.curves.append(curve)
            for step in lr_steps(run.history, run.epochs):
                axes.axvline(step, color=color, ls=":", lw=0.6, alpha=0.45)
            peak = run.peak_row
            peak_epoch, peak_value = int(run.epochs[peak]), float(accuracy[peak])
            (marker,) = axes.plot(
                [peak_epoch], [peak_value], marker="*", ms=7, color=color, mec="k", mew=0.4, ls=""
            )
            self.peaks.append(marker)
            # In the right half the label goes left of the star, so it stays on the canvas. It is
            # redrawn per frame: once past the peak it also says the drop ("-0.42 points"), next
            # to the peak it is measured from, stacked apart from the other runs' labels.
            right_half = peak_epoch > (first + last) / 2
            self._peak_words.append(
                f"peak {short_percent(peak_value)} @ {peak_epoch}"
                if np.isfinite(peak_value)
                else ""
            )
            # Each run's label on its own row at the top (x: its peak epoch), above every curve
            # (the y range leaves that head room): labels of nearby peaks never overlap.
            # A Text, not an annotation: it is drawn every frame, and an Annotation costs more.
            place = offset_copy(
                blended_transform_factory(axes.transData, axes.transAxes),
                fig=axes.get_figure(root=True),
                x=-4 if right_half else 4,
                y=0,
                units="points",
            )
            text = axes.text(
                peak_epoch,
                0.97 - LABEL_ROW * index,
                self._peak_words[-1],
                transform=place,
                color=color,
                fontsize="small",
                va="top",
                ha="right" if right_half else "left",
                animated=animated,
            )
            drop = PolyCollection([], facecolors=[(*color, 0.18)], edgecolors="none")
            drop.set_animated(animated)
            axes.add_collection(drop, autolim=False)
            self._drops.append(drop)
            self._drop_texts.append(text)
        self.cursor = axes.axvline(first, color="0.25", lw=0.9, animated=animated)
        axes.set_xlim(first - 0.5, last + 0.5)
        low, high = self._accuracy_range()
        axes.set_ylim(low, high)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=1))
        axes.yaxis.set_major_locator(MaxNLocator(3))
        # The head room for the peak labels may reach past 100%: no tick claims such accuracy.
        axes.yaxis.set_major_formatter(
            FuncFormatter(lambda value, _: "" if value > 1.0 + 1e-9 else f"{100 * value:.0f}%")
        )
        axes.set_xlabel("epoch")
        axes.set_ylabel(f"{STRIP_SPLIT} acc")
        axes.grid(axis="y", alpha=0.25, lw=0.5)
        self.metric_axes: Axes | None = None
        if metric is not None:
            self._add_metric(metric, colors)

    def _accuracy_range(self) -> tuple[float, float]:
        """Zoomed on the top: from where each run comes within ZOOM of its peak on, so a
        decline of tenths of a point shows (the first epochs' climb enters from below)."""
        tails = []
        for run in self.runs:
            curve = run.accuracy_curve(STRIP_SPLIT)
            if not np.isfinite(curve).any():
                continue
            near = np.flatnonzero(curve >= np.nanmax(curve) - ZOOM)
            tails.append(curve[near[0] :])
        values = np.concatenate(tails) if tails else np.empty(0)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return 0.0, 1.0
        low, high = float(values.min()), float(values.max())
        span = max(high - low, 0.02)
        # Head room: the peaks sit below the top fraction `rows`, one row of label per run.
        rows = min(LABEL_ROW * len(self.runs) + 0.05, 0.7)
        bottom = max(low - 0.08 * span, 0.0)
        return bottom, bottom + (high - bottom) / (1 - rows)

    def _add_metric(self, metric: str, colors: np.ndarray) -> None:
        twin = self.axes.twinx()
        for run, color in zip(self.runs, colors, strict=True):
            twin.plot(
                run.epochs, run.metric_curve(STRIP_SPLIT, metric), color=color, ls="--", lw=0.7
            )
        twin.set_ylabel(f"{metric} (--)")
        twin.yaxis.set_major_locator(MaxNLocator(3))
        twin.spines["right"].set_visible(True)
        self.metric_axes = twin

    @property
    def moving(self) -> list[Artist]:
        """The artists a frame redraws, back to front."""
        return [*self._drops, self.cursor, *self._drop_texts]

    def show_epoch(self, epoch: int) -> None:
        """Cursor at ``epoch``; each run past its peak shades and labels its drop so far."""
        self.cursor.set_xdata([epoch, epoch])
        for run, drop, text, words in zip(
            self.runs, self._drops, self._drop_texts, self._peak_words, strict=True
        ):
            row = run.row_at(epoch)
            peak = run.peak_row
            lost = drop_points(run, row)
            if row <= peak or epoch < int(run.epochs[0]):
                drop.set_verts([])
                text.set_text(words)
                continue
            accuracy = run.accuracy_curve(STRIP_SPLIT)
            x = run.epochs[peak : row + 1].astype(np.float64)
            curve = accuracy[peak : row + 1]
            top = np.full_like(curve, accuracy[peak])
            outline = np.concatenate([np.stack([x, top], 1), np.stack([x, curve], 1)[::-1]])
            drop.set_verts([outline[np.isfinite(outline).all(axis=1)]])
            text.set_text(f"{words}, now -{lost:.2f} points" if lost > 0 else words)

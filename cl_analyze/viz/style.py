"""Figure conventions shared by every plot: the paper/slides style, the class palette, the limits.

Kept apart from the plotting code so a static figure and an animation frame of the same run look
alike: same fonts, same class colours, same axis limits.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cl_analyze.atomic import atomic_path
from cl_analyze.errors import CLAnalyzeError

FIGURE_FORMATS = ("png", "pdf")
# Seaborn's colour-blind-safe palette has 10 distinct colours; beyond that hues are spaced evenly.
COLORBLIND_COLORS = 10


@dataclass(frozen=True)
class FigureStyle:
    """Sizes in inches and fonts in points for one medium (a two-column paper or slides)."""

    name: str
    width: float  # a full-width figure (one paper column)
    panel: float  # one scatter panel's side
    font_size: float
    marker_size: float  # scatter marker area in points^2
    png_dpi: int
    frame_dpi: int  # animation frames are pixels: this sets their size
    rc: dict[str, Any] = field(default_factory=dict)
    # True: every saved figure is exactly ``width`` wide (a paper's column or page), its height
    # fitted to the content; False: tight bounding boxes (slides, the web).
    exact_width: bool = False

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Apply the style while a figure is built or saved (text picks its size when created)."""
        with mpl.rc_context(cast(Any, self.rc)):
            yield


def _rc(font_size: float) -> dict[str, Any]:
    return {
        "font.size": font_size,
        "axes.titlesize": font_size,
        "axes.labelsize": font_size,
        "xtick.labelsize": font_size - 1,
        "ytick.labelsize": font_size - 1,
        "legend.fontsize": font_size - 1,
        "legend.title_fontsize": font_size - 1,
        "axes.linewidth": 0.6,
        "lines.linewidth": 1.0,
        "lines.markersize": 3.0,
        "xtick.major.width": 0.5,
        "ytick.major.width": 0.5,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlepad": 3.0,
        "legend.frameon": False,
        "figure.constrained_layout.use": False,
        # TrueType fonts in PDFs: editable text, accepted by publishers (Type 3 often is not).
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "savefig.bbox": "tight",
        "savefig.pad_inches": 0.02,
    }


STYLES: dict[str, FigureStyle] = {
    "paper": FigureStyle(
        "paper",
        width=3.4,
        panel=1.6,
        font_size=7.0,
        marker_size=1.0,
        png_dpi=300,
        frame_dpi=200,
        rc=_rc(7.0),
        exact_width=True,
    ),
    "slides": FigureStyle(
        "slides",
        width=8.0,
        panel=3.6,
        font_size=12.0,
        marker_size=3.0,
        png_dpi=150,
        frame_dpi=100,
        rc=_rc(12.0),
    ),
}


def figure_style(name: str) -> FigureStyle:
    try:
        return STYLES[name]
    except KeyError:
        raise CLAnalyzeError(
            f"unknown figure style {name!r}: use one of {', '.join(STYLES)}"
        ) from None


# Paper widths in inches: one column of a two-column paper (ICML 3.25, NeurIPS/IEEE ~3.4,
# ACM 3.33) and a full two-column page (~7 in; ICML 6.75, IEEE 7.16).
FIGURE_WIDTHS = {"column": 3.4, "page": 7.0}
FONTS = ("sans", "serif")
WIDTH_RANGE = (1.0, 20.0)


def parse_figure_width(text: str | None) -> float | None:
    """``column`` / ``page`` / inches -> inches; None keeps the style's own width."""
    if text is None:
        return None
    key = text.strip().lower()
    if key in FIGURE_WIDTHS:
        return FIGURE_WIDTHS[key]
    try:
        inches = float(key.removesuffix("in"))
    except ValueError:
        inches = float("nan")
    if not WIDTH_RANGE[0] <= inches <= WIDTH_RANGE[1]:
        raise CLAnalyzeError(
            f"--figure-width {text!r}: give column (3.4 in), page (7 in) or inches between"
            f" {WIDTH_RANGE[0]:g} and {WIDTH_RANGE[1]:g}, e.g. 3.25"
        )
    return inches


def check_fonts(font: str, usetex: bool) -> None:
    """``--font`` and ``--usetex`` usable here (checked before any work is done)."""
    if font not in FONTS:
        raise CLAnalyzeError(f"--font {font!r}: use one of {', '.join(FONTS)}")
    if usetex and shutil.which("latex") is None:
        raise CLAnalyzeError(
            "--usetex needs LaTeX, which is not installed: install it (Debian: apt-get install"
            " texlive-latex-extra cm-super dvipng) or drop --usetex"
        )


def paper_style(
    base: FigureStyle,
    width: float | None = None,
    *,
    font: str = "sans",
    usetex: bool = False,
) -> FigureStyle:
    """``base`` at an exact ``width`` (inches; None keeps its own), in a sans or serif font,
    optionally typeset by LaTeX (its fonts then match the paper's body text)."""
    check_fonts(font, usetex)
    rc = dict(base.rc)
    if font == "serif":
        # DejaVu Serif ships with matplotlib; Computer Modern-like maths to match LaTeX papers.
        rc.update({"font.family": "serif", "mathtext.fontset": "dejavuserif"})
    if usetex:
        rc.update({"text.usetex": True, "font.family": font.replace("sans", "sans-serif")})
    exact = base.exact_width or width is not None
    if exact:
        rc["savefig.bbox"] = "standard"  # a tight box would change the width asked for
    return replace(base, width=width or base.width, rc=rc, exact_width=exact)


def class_colors(num_classes: int) -> np.ndarray:
    """(C, 3) RGB in [0, 1]: colour-blind safe up to 10 classes, evenly spaced hues beyond."""
    if num_classes <= COLORBLIND_COLORS:
        palette = sns.color_palette("colorblind", COLORBLIND_COLORS)[:num_classes]
    else:
        palette = sns.color_palette("husl", num_classes)
    return np.asarray(palette, dtype=np.float64)


def run_colors(num_runs: int) -> np.ndarray:
    """(R, 3) one colour per run for curves (the dark palette: apart from class colours)."""
    name = "dark" if num_runs <= COLORBLIND_COLORS else "husl"
    return np.asarray(sns.color_palette(name, max(num_runs, 1))[:num_runs], dtype=np.float64)


Limits = tuple[tuple[float, float], tuple[float, float]]


def robust_limits(
    points: np.ndarray,
    extra: np.ndarray | None = None,
    *,
    quantile: float = 0.005,
    pad: float = 0.06,
) -> Limits:
    """Axis limits covering the central 99% of ``points`` (..., 2) on each axis, padded.

    Quantiles instead of min/max keep one stray point from shrinking the whole cloud; ``extra``
    points (the learned centers) are always inside. Computed once per run over all epochs so every
    frame of that run shares them.
    """
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    flat = flat[np.isfinite(flat).all(axis=1)]
    if len(flat) == 0:
        return ((-1.0, 1.0), (-1.0, 1.0))
    low = np.quantile(flat, quantile, axis=0)
    high = np.quantile(flat, 1.0 - quantile, axis=0)
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64).reshape(-1, 2)
        extra = extra[np.isfinite(extra).all(axis=1)]
        if len(extra):
            low = np.minimum(low, extra.min(axis=0))
            high = np.maximum(high, extra.max(axis=0))
    span = np.maximum(high - low, 1e-6 * np.maximum(np.abs(high), 1.0))
    low, high = low - pad * span, high + pad * span
    return ((float(low[0]), float(high[0])), (float(low[1]), float(high[1])))


def fit_height(figure: Figure, pad: float = 0.04, rounds: int = 4) -> None:
    """Lay ``figure`` out and grow or shrink its height until its content fits inside, width
    unchanged: constrained layout alone cannot keep square panels' titles on a canvas that is
    too short (their aspect wins), and a fixed-size PDF or frame must not clip any text."""
    # Layout and text extents only: a full draw would render every point (seconds per round).
    canvas = figure.canvas
    if not isinstance(canvas, FigureCanvasAgg):  # a bare Figure(): Agg measures its text
        canvas = FigureCanvasAgg(figure)
    renderer = canvas.get_renderer()
    engine = figure.get_layout_engine()

    def lay_out() -> None:
        if engine is not None:
            engine.execute(figure)

    grown = False  # once grown, never shrink again: the two could alternate
    for _ in range(rounds):
        lay_out()
        tight = figure.get_tightbbox(renderer)
        width, height = figure.get_size_inches()
        if tight is None:
            return
        wanted = tight.height + 2 * pad
        # Past the canvas edge (a hair of tolerance: constrained layout puts a bottom legend
        # within a pixel of the edge, inside it).
        overflow = max(tight.y1 - height, -tight.y0)
        if overflow > 0.005:
            grown = True
            figure.set_size_inches(width, height + overflow + pad)
        elif not grown and height - wanted > 0.05:
            figure.set_size_inches(width, wanted)
        else:
            return
    lay_out()


def save_figure(
    figure: Figure, stem: Path, style: FigureStyle, formats: tuple[str, ...] = FIGURE_FORMATS
) -> list[Path]:
    """Write ``stem.png`` (raster for the web) and ``stem.pdf`` (vector for the paper), each
    whole or not at all. An ``exact_width`` style rescales the figure to its width first and
    fits the height to the content, so the PDF's page is exactly that wide."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with style.context():
        if style.exact_width:
            width, height = figure.get_size_inches()
            figure.set_size_inches(style.width, height * style.width / width)
            fit_height(figure)
        for extension in formats:
            path = stem.with_suffix(f".{extension}")
            dpi = style.png_dpi if extension == "png" else "figure"
            with atomic_path(path) as temporary:
                figure.savefig(temporary, format=extension, dpi=dpi, metadata=_metadata(extension))
            written.append(path)
    return written


def _metadata(extension: str) -> dict[str, str | None] | None:
    # PDF metadata carries a creation date by default: drop it so reruns give identical files.
    return {"CreationDate": None} if extension == "pdf" else None


def short_percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}%"

"""What a report is built with: the options asked for, the folder being written, its blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import (
    DEFAULT_LAST_K,
    DEFAULT_THRESHOLD,
    SeedGroup,
)
from cl_analyze.progress import Reporter
from cl_analyze.report.document import Block
from cl_analyze.report.runs import RunData

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    from matplotlib.figure import Figure

    from cl_analyze.viz.style import FigureStyle


REPORT_FORMAT = "cl-analyze-report"


REPORT_VERSION = 2  # 2: the decline test, seeds pooled, warnings (docs/report.md)


FIGURES = "figures"


DEFAULT_REPORTS = Path("reports")


@dataclass(frozen=True)
class ReportOptions:
    """What `cl-analyze report` was asked for."""

    out: Path | None = None  # default: reports/<first run's folder name>
    # Scatter epochs: numbers or first/peak/last; default: start, threshold, peak, last.
    epochs: tuple[int | str, ...] | None = None
    last_k: int = DEFAULT_LAST_K
    threshold: float = DEFAULT_THRESHOLD
    allow_mixed: bool = False
    animation: bool = True
    figures: bool = True  # False: text, tables and data only (fast)
    max_points: int = 2000  # per scatter panel / animation frame
    style: str = "slides"
    projection: str = "pca"  # D > 2: pca, umap or tsne (viz.projections)
    regions: bool = False  # shade the classifier's decision regions under the scatters
    figure_width: float | None = None  # inches: paper figures at this exact width
    font: str = "sans"
    usetex: bool = False
    strip: bool = True  # the accuracy strip under the animation (and the scrubber's frames)

    def __post_init__(self) -> None:
        if self.last_k < 1:
            raise CLAnalyzeError(f"--last-k must be >= 1, got {self.last_k}")
        if not 0 < self.threshold <= 1:
            raise CLAnalyzeError(
                f"--threshold must be an accuracy in (0, 100]%, got {self.threshold}"
            )
        if self.max_points < 1:
            raise CLAnalyzeError(f"--max-points must be >= 1, got {self.max_points}")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise CLAnalyzeError(f"--out {self.out} is a file: pass a folder for the report")
        if self.usetex or self.font != "sans":
            from cl_analyze.viz.style import check_fonts

            check_fonts(self.font, self.usetex)


@dataclass
class ReportBuild:
    """A report being written into a temporary folder."""

    folder: Path
    options: ReportOptions
    runs: list[RunData]
    blocks: list[Block] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # sections left out, with why
    groups: list[SeedGroup] = field(default_factory=list)  # runs that differ only in seed
    # run label -> the numbers of "Why accuracy declines after the peak" (summary.json)
    explained: dict[str, dict[str, Any]] = field(default_factory=dict)
    reporter: Reporter | None = None

    def figure_style(self) -> FigureStyle:
        """The report's style: slides for the web, or the paper style at ``figure_width``."""
        from cl_analyze.viz.style import figure_style, paper_style

        options = self.options
        base = figure_style("paper" if options.figure_width is not None else options.style)
        return paper_style(base, options.figure_width, font=options.font, usetex=options.usetex)

    def save_figure(self, figure: Figure, name: str) -> str:
        """Write ``name``.png (shown on the page) and .pdf (vector, for papers); the figure is
        cleared afterwards. Returns the PNG's path relative to the report."""
        from cl_analyze.viz.style import save_figure

        path, relative = self.figure_path(f"{name}.png")
        save_figure(figure, path.with_suffix(""), self.figure_style(), formats=("png", "pdf"))
        figure.clf()
        return relative

    def figure_path(self, name: str) -> tuple[Path, str]:
        relative = f"{FIGURES}/{name}"
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, relative

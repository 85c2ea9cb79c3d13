"""Paper figures: exact widths in the PDF, TrueType fonts, serif text, one-line bad widths."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_plot import write_store
from test_strip import LONG, planted_run

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.viz import load_plot_run
from cl_analyze.viz.curves import accuracy_figure
from cl_analyze.viz.scatter import scatter_figure
from cl_analyze.viz.style import figure_style, paper_style, parse_figure_width, save_figure


def media_box(pdf: Path) -> tuple[float, float]:
    """The first page's width and height in inches, read from the PDF's /MediaBox."""
    match = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    assert match, "no MediaBox"
    return float(match[1]) / 72, float(match[2]) / 72


@pytest.mark.parametrize("width", ["column", "page", "3.25"])
def test_pdf_page_is_exactly_the_width_asked_for(width: str, tmp_path: Path) -> None:
    inches = {"column": 3.4, "page": 7.0, "3.25": 3.25}[width]
    assert parse_figure_width(width) == inches
    style = paper_style(figure_style("paper"), parse_figure_width(width))
    runs = [planted_run("a", LONG), planted_run("b", LONG[::-1], seed=1)]
    # A scatter grid (its natural width is not the column's) and a curves figure.
    for name, figure in (
        ("scatter", scatter_figure(runs, style=style)),
        ("accuracy", accuracy_figure(runs, style)),
    ):
        # The PNG (slow at 300 dpi) once: it must be as wide as the PDF.
        formats = ("pdf", "png") if width == "3.25" and name == "accuracy" else ("pdf",)
        pdf, *png = save_figure(figure, tmp_path / name, style, formats)
        page_width, page_height = media_box(pdf)
        assert page_width == pytest.approx(inches, abs=0.01)
        # Nothing outside the page: the drawn content fits the (fitted) height.
        tight = figure.get_tightbbox()
        assert tight is not None
        assert tight.y1 <= page_height + 0.01 and tight.y0 >= -0.01
        assert tight.x1 <= inches + 0.01 and tight.x0 >= -0.01
        data = pdf.read_bytes()
        assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType (Type 42) embedded
        if png:
            from PIL import Image

            with Image.open(png[0]) as image:
                assert image.width == round(inches * style.png_dpi)


def test_the_paper_style_is_one_column_by_default(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "r", epochs=3))
    style = paper_style(figure_style("paper"))
    pdf = save_figure(scatter_figure([run], style=style), tmp_path / "s", style, ("pdf",))[0]
    assert media_box(pdf)[0] == pytest.approx(3.4, abs=0.01)
    # Slides keep their tight boxes: no exact width unless one is asked for.
    assert not paper_style(figure_style("slides")).exact_width
    assert paper_style(figure_style("slides"), 7.0).exact_width


def test_serif_font_reaches_the_text() -> None:
    style = paper_style(figure_style("paper"), font="serif")
    figure = accuracy_figure([planted_run("a", LONG)], style)
    assert figure.axes[0].xaxis.label.get_fontfamily() == ["serif"]
    plain = accuracy_figure([planted_run("a", LONG)], figure_style("paper"))
    assert plain.axes[0].xaxis.label.get_fontfamily() != ["serif"]


@pytest.mark.parametrize("text", ["wide", "0.5", "30", "nan"])
def test_a_bad_width_is_one_line_naming_the_fix(text: str) -> None:
    with pytest.raises(CLAnalyzeError, match=r"--figure-width .*: give column \(3.4 in\)"):
        parse_figure_width(text)


@pytest.mark.skipif(shutil.which("latex") is not None, reason="LaTeX is installed here")
def test_usetex_without_latex_says_how_to_get_it() -> None:
    with pytest.raises(CLAnalyzeError, match="--usetex needs LaTeX"):
        paper_style(figure_style("paper"), usetex=True)
    from cl_analyze.report import ReportOptions

    with pytest.raises(CLAnalyzeError, match="--usetex needs LaTeX"):  # before any run is read
        ReportOptions(usetex=True)


def test_a_bare_figure_is_fitted_too(tmp_path: Path) -> None:
    # The report builds some figures as plain Figure() objects with no Agg canvas attached.
    from matplotlib.figure import Figure

    style = paper_style(figure_style("paper"), 3.3)
    figure = Figure(figsize=(6.0, 2.0), layout="constrained")
    figure.subplots().set_title("a title")
    pdf = save_figure(figure, tmp_path / "bare", style, ("pdf",))[0]
    assert media_box(pdf)[0] == pytest.approx(3.3, abs=0.01)

"""`cl-analyze report` end to end on small stores written through RunWriter with a planted curve."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import CHROMIUM, Browser
from typer.testing import CliRunner

from cl_analyze.cli import app, main
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.report import ReportOptions, build_report
from cl_analyze.report.document import SCRUBBER_SCRIPT, markdown_cell, markdown_escape
from cl_analyze.store import RunWriter

CLASSES = 3
PER_CLASS = 20
EPOCHS = 15  # rows for epochs 0..15
PEAK = 7


def planted_accuracy(epoch: np.ndarray) -> np.ndarray:
    """Rises to 0.99 at epoch 7, then falls 2 points per epoch with a zigzag: on 60 test
    samples (1.67 points each) a decline the test can call real."""
    rise = 0.3 + (0.99 - 0.3) * epoch / PEAK
    fall = 0.99 - 0.02 * (epoch - PEAK) - 0.004 * (epoch % 2)
    return np.where(epoch <= PEAK, rise, fall)


def write_planted_run(
    run_dir: Path,
    *,
    dataset: str = "mnist-5k",
    loss: str = "center",
    spread_scale: float = 1.0,
    epochs: int = EPOCHS,
) -> Path:
    """A store whose features drift with the epoch: classes tighten until the peak, then loosen."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    angles = 2 * np.pi * np.arange(CLASSES) / CLASSES
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    noise = rng.standard_normal((len(labels), 2))
    config = {"loss": loss, "dataset": dataset, "epochs": epochs, "lr": 0.01, "seed": 1}
    with RunWriter.create(
        run_dir / "run.h5",
        dataset=dataset,
        class_names=[f"digit {c}" for c in range(CLASSES)],
        feat_dim=2,
        splits={split: (labels, np.arange(len(labels))) for split in ("train", "test")},
        history_names=("test_accuracy", "train_accuracy_eval", "lr", "elapsed_s"),
        with_centers=loss == "center",
        config=config,
        attrs={"device": "cpu", "hardware": "test machine"},
    ) as writer:
        accuracy = planted_accuracy(np.arange(epochs + 1))
        for epoch in range(epochs + 1):
            radius = 1.0 + 0.3 * epoch
            spread = spread_scale * (0.2 + 0.05 * abs(epoch - PEAK))
            features = radius * directions[labels] + spread * noise
            writer.append_epoch(
                epoch,
                scalars={
                    "test_accuracy": accuracy[epoch],
                    "train_accuracy_eval": min(1.0, accuracy[epoch] + 0.005),
                    "lr": 0.01,
                    "elapsed_s": 2.0 * epoch,
                },
                features={"train": features, "test": features},
                predictions={"train": labels, "test": labels},
                centers=radius * directions if loss == "center" else None,
            )
    return run_dir


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    center = write_planted_run(root / "center", loss="center", spread_scale=0.5)
    softmax = write_planted_run(root / "softmax", loss="softmax", spread_scale=2.0)
    return center, softmax


@pytest.fixture(scope="module")
def two_run_report(
    planted_runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("reports") / "demo"
    index = build_report(list(planted_runs), ReportOptions(out=out, max_points=30))
    assert index == out / "index.html"
    return out


class _References(html.parser.HTMLParser):
    """Collects every src/href of a page (the scrubber's frames too), and every <script>'s text."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append("")
            self._in_script = True
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.references.append(value)
            if name == "data-frames" and value:
                self.references += [path for path, _ in json.loads(value)]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse_page(path: Path) -> _References:
    parser = _References()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_summary_finds_the_planted_peak_and_decline(two_run_report: Path) -> None:
    summary = json.loads((two_run_report / "summary.json").read_text())
    accuracy = planted_accuracy(np.arange(EPOCHS + 1))
    expected_decline = accuracy[PEAK] - accuracy[-5:].mean()
    assert [run["name"] for run in summary["runs"]] == ["center", "softmax"]
    for run in summary["runs"]:
        assert run["peak_epoch"] == PEAK
        assert run["peak_accuracy"] == pytest.approx(accuracy[PEAK])
        assert run["decline"] == pytest.approx(expected_decline)
        assert run["final_accuracy"] == pytest.approx(accuracy[-1])
        assert run["epochs_to_threshold"] == int(np.flatnonzero(accuracy >= 0.97)[0])
        assert run["verdict"] == "real decline"
    page = parse_page(two_run_report / "index.html")
    text = " ".join(page.text)
    assert f"peaks at {100 * accuracy[PEAK]:.2f}% at epoch {PEAK}" in text
    assert f"declines by {100 * expected_decline:.2f} points" in text
    markdown = (two_run_report / "report.md").read_text()
    assert f"declines by {100 * expected_decline:.2f} points" in markdown


def test_metrics_csv_holds_every_run_with_a_run_column(two_run_report: Path) -> None:
    frame = pd.read_csv(two_run_report / "metrics.csv", keep_default_na=False)
    assert set(frame["run"]) == {"center", "softmax"}
    history = frame[(frame["split"] == "history") & (frame["metric"] == "test_accuracy")]
    center = history[history["run"] == "center"].sort_values("epoch")
    np.testing.assert_allclose(
        center["value"].astype(float), planted_accuracy(np.arange(EPOCHS + 1))
    )


def test_page_parses_and_every_reference_exists(two_run_report: Path) -> None:
    page = parse_page(two_run_report / "index.html")
    # The one script is the scrubber's constant, allowed by its hash in the page's policy.
    assert page.scripts == [SCRUBBER_SCRIPT]
    digest = base64.b64encode(hashlib.sha256(SCRUBBER_SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in (two_run_report / "index.html").read_text()
    assert page.references, "the page shows figures"
    for reference in page.references:
        parsed = urllib.parse.urlparse(reference)
        assert parsed.scheme == "" and parsed.netloc == "", f"external reference {reference}"
        assert (two_run_report / urllib.parse.unquote(parsed.path)).is_file(), reference
    markdown = (two_run_report / "report.md").read_text()
    links = [urllib.parse.unquote(m) for m in _markdown_links(markdown)]
    assert links
    for link in links:
        assert (two_run_report / link).is_file(), link


def _markdown_links(markdown: str) -> list[str]:
    import re

    return re.findall(r"\]\(([^)\s]+)\)", markdown)


def test_script_in_a_run_name_is_escaped(tmp_path: Path) -> None:
    # "$x^2$" would be mathtext in a matplotlib title: the figures must still be drawn.
    run = write_planted_run(tmp_path / "<script>alert(1)</script> $x^2$", epochs=3)
    out = tmp_path / "reports" / "evil"
    index = build_report([run], ReportOptions(out=out, max_points=20))
    page = index.read_text()
    assert "<script>alert" not in page and page.count("&lt;script&gt;") >= 1
    assert parse_page(index).scripts == [SCRUBBER_SCRIPT]
    markdown = (out / "report.md").read_text()
    assert "<script>" not in markdown and "&lt;script>" in markdown


def test_default_output_folder_is_named_after_the_first_run(
    planted_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    index = build_report([planted_runs[0]], ReportOptions(figures=False))
    assert index == Path("reports") / "center" / "index.html" and index.is_file()


def test_markdown_escape_neutralises_syntax() -> None:
    assert markdown_escape("a|b *c* [x](y) <b> 3 -> 4") == r"a\|b \*c\* \[x\](y) &lt;b> 3 -> 4"
    assert markdown_escape("# 1. x_y") == r"\# 1. x\_y"
    assert markdown_escape("12. item") == r"12\. item"
    assert markdown_escape("- item") == r"\- item"


def test_markdown_table_cells_read_as_plain_text(two_run_report: Path) -> None:
    # Only a pipe, a backslash and inline markup are escaped inside a cell.
    assert markdown_cell("10.00%") == "10.00%"
    assert markdown_cell("-0.00") == "-0.00"
    assert markdown_cell("a|b *c* x_y") == r"a\|b \*c\* x\_y"
    summary = json.loads((two_run_report / "summary.json").read_text())
    peak = f"{100 * summary['runs'][0]['peak_accuracy']:.2f}%"
    rows = [line for line in (two_run_report / "report.md").read_text().splitlines()]
    center_row = next(line for line in rows if line.startswith("| center | mnist-5k |"))
    assert f" {peak} " in center_row and "\\." not in center_row


def test_tables_tex_holds_the_summary_in_booktabs(two_run_report: Path) -> None:
    tex = (two_run_report / "tables.tex").read_text()
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 3  # summary + 2 metrics
    first = tex[: tex.index("\\end{table}")]
    body = first[first.index("\\midrule") + len("\\midrule") : first.index("\\bottomrule")]
    rows = [line.removesuffix("\\\\").strip().split(" & ") for line in body.strip().splitlines()]
    summary = json.loads((two_run_report / "summary.json").read_text())
    assert [row[0] for row in rows] == [run["name"] for run in summary["runs"]]
    for row, run in zip(rows, summary["runs"], strict=True):
        assert row[3] == str(run["peak_epoch"])
        assert row[4] == f"{100 * run['peak_accuracy']:.2f}\\%"  # % escaped for LaTeX
        assert row[8].startswith("p $<$ ") or row[8] == ""  # no bare < (OT1 prints it as ¡)
    assert "\\toprule" in first and "\\label{tab:cl-summary}" in first


@pytest.mark.slow  # every figure at 300 dpi; fast: test_pdf_page_is_exactly_the_width_asked_for
def test_report_figures_at_a_paper_width_are_pdf_and_png(
    planted_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "paper"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(planted_runs[0]),
            "--out",
            str(out),
            "--figure-width",
            "3.25",
            "--font",
            "serif",
            "--no-animation",
            "--max-points",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("accuracy", "metrics", "centers_0", "distances_0", "scatter_0"):
        pdf = (out / "figures" / f"{name}.pdf").read_bytes()
        match = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ", pdf)
        assert match and float(match[1]) == pytest.approx(3.25 * 72, abs=0.5), name
        assert (out / "figures" / f"{name}.png").is_file()
    bad = CliRunner().invoke(app, ["report", str(planted_runs[0]), "--figure-width", "huge"])
    assert isinstance(bad.exception, CLAnalyzeError) and "--figure-width" in str(bad.exception)


def test_mixed_datasets_are_refused_unless_allowed(tmp_path: Path) -> None:
    mnist = write_planted_run(tmp_path / "a", dataset="mnist-5k", epochs=2)
    fashion = write_planted_run(tmp_path / "b", dataset="fashion-mnist", epochs=2)
    with pytest.raises(CLAnalyzeError, match=r"different datasets.*--allow-mixed"):
        build_report([mnist, fashion], ReportOptions(out=tmp_path / "r", figures=False))
    assert not (tmp_path / "r").exists()
    index = build_report(
        [mnist, fashion], ReportOptions(out=tmp_path / "r", figures=False, allow_mixed=True)
    )
    assert "different datasets" in index.read_text()


def test_a_folder_without_store_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CLAnalyzeError, match="no run store"):
        build_report([tmp_path / "empty"], ReportOptions(out=tmp_path / "r"))
    # The console entry point turns it into one line on stderr and exit code 2.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["cl-analyze", "report", str(tmp_path / "empty")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.strip().startswith("error: no run store") and "Traceback" not in error
    assert not (tmp_path / "reports").exists()


def test_existing_report_is_replaced_whole_and_other_folders_are_kept(
    planted_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    build_report([planted_runs[0]], ReportOptions(out=out, figures=False))
    (out / "stale.txt").write_text("from an older report")
    build_report([planted_runs[0]], ReportOptions(out=out, figures=False))
    assert not (out / "stale.txt").exists() and (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folder left
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    with pytest.raises(CLAnalyzeError, match="not a cl-analyze report"):
        build_report([planted_runs[0]], ReportOptions(out=unrelated))
    assert (unrelated / "keep.txt").read_text() == "mine"


def test_a_run_still_training_is_reported_up_to_its_last_epoch(tmp_path: Path) -> None:
    from cl_analyze.store import run_lock

    run = write_planted_run(tmp_path / "live", epochs=4)
    with run_lock(run, "train"):  # this process stands in for the live trainer
        index = build_report([run], ReportOptions(out=tmp_path / "r", figures=False))
    assert "still training: reported up to its last completed epoch, 4" in index.read_text()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["runs"][0]["training"] is True


def test_a_one_epoch_store_reports_its_only_epoch(tmp_path: Path) -> None:
    run = write_planted_run(tmp_path / "fresh", epochs=0)
    index = build_report([run], ReportOptions(out=tmp_path / "r", max_points=20))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())["runs"][0]
    assert (summary["peak_epoch"], summary["final_epoch"], summary["decline"]) == (0, 0, 0.0)
    assert summary["verdict"] == "no decline"
    assert "the last epoch recorded: no decline (yet)" in index.read_text()
    assert parse_page(index).references


def test_cli_prints_the_index_path_last(planted_runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(planted_runs[0]),
            "--out",
            str(out),
            "--no-figures",
            "--last-k",
            "3",
            "--threshold",
            "98.5",
            "--epochs",
            "0,7",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out / "index.html")
    summary = json.loads((out / "summary.json").read_text())
    accuracy = planted_accuracy(np.arange(EPOCHS + 1))
    assert summary["runs"][0]["decline"] == pytest.approx(accuracy[PEAK] - accuracy[-3:].mean())
    assert summary["threshold"] == pytest.approx(0.985)
    assert summary["runs"][0]["epochs_to_threshold"] == int(np.flatnonzero(accuracy >= 0.985)[0])
    bad = CliRunner().invoke(app, ["report", str(planted_runs[0]), "--epochs", "99"])
    assert isinstance(bad.exception, CLAnalyzeError) and "--epochs 99" in str(bad.exception)


@pytest.mark.slow  # a browser; fast: test_page_parses_and_every_reference_exists
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_headless_screenshot_is_not_blank(two_run_report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (two_run_report / "index.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    # Text and figures make many distinct grey levels; a blank page has one or two.
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)
def test_page_in_chromium_fits_1280_and_420_px_and_the_scrubber_steps(
    two_run_report: Path, tmp_path: Path
) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        for width in (1280, 420):
            browser.open((two_run_report / "index.html").resolve().as_uri(), width)
            # Not blank: the text is there and every image decoded.
            assert browser.evaluate("document.body.innerText.length") > 500
            assert (
                browser.evaluate(
                    "[...document.images].every(i => i.naturalWidth > 0) && document.images.length"
                )
                >= 5
            )
            # No sideways scrolling of the page: wide tables and figures scroll in their boxes.
            page_width = browser.evaluate("document.documentElement.scrollWidth")
            assert page_width <= browser.evaluate("window.innerWidth"), (width, page_width)
            # Figures stay readable: no figure image drawn narrower than 300 CSS pixels.
            assert (
                browser.evaluate(
                    "Math.min(...[...document.querySelectorAll('figure img')].map(i => i.width))"
                )
                >= 300
            )
        # The scrubber: the slider and the arrow keys change the frame shown and its words.
        frames = json.loads(
            browser.evaluate("document.querySelector('figure.scrubber').dataset.frames")
        )
        shown = "document.querySelector('figure.scrubber img').getAttribute('src')"
        words = "document.querySelector('figure.scrubber output').textContent"
        assert browser.evaluate(shown) == frames[-1][0]
        browser.evaluate(
            "const s = document.querySelector('figure.scrubber input');"
            " s.value = 0; s.dispatchEvent(new Event('input'))"
        )
        assert browser.evaluate(shown) == frames[0][0]
        assert browser.evaluate(words).startswith("epoch 0 · center: test")
        browser.evaluate(
            "document.querySelector('figure.scrubber').dispatchEvent("
            "new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}))"
        )
        assert browser.evaluate(shown) == frames[1][0]
        browser.wait_for("document.querySelector('figure.scrubber img').naturalWidth > 0")
        # The content-security policy let the scrubber's script run and nothing else.
        assert browser.evaluate("document.scripts.length") == 1
    finally:
        browser.close()


def test_accuracy_figure_has_integer_epochs_and_every_peak_label(tmp_path: Path) -> None:
    from cl_analyze.report.figures import peak_decline_figure
    from cl_analyze.report.runs import read_run

    # Two identical short runs: their peaks coincide, and 4 epochs once gave 0.5-epoch ticks.
    runs = [
        read_run(write_planted_run(tmp_path / name, epochs=3), name, last_k=2, threshold=0.97)
        for name in ("a", "b")
    ]
    figure = peak_decline_figure(runs, np.array([[0, 0, 1.0], [1.0, 0, 0]]), 8.0, 0.97)
    figure.canvas.draw()  # type: ignore[call-arg]
    for axes in figure.axes:
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels = [text for text in figure.axes[1].texts if "@" in text.get_text()]
    assert len(labels) == 2
    first, second = (label.get_window_extent() for label in labels)
    assert not first.overlaps(second)  # stacked, both readable


def test_heatmaps_show_at_one_size_with_or_without_centers(two_run_report: Path) -> None:
    page = (two_run_report / "index.html").read_text()
    widths = {
        name: re.search(rf'src="figures/{name}.png" width="(\d+)"', page)
        for name in ("distances_0", "distances_1", "centers_0")
    }
    assert all(widths.values()), widths
    # center has centers beside its heatmap, softmax has none: the heatmaps match anyway.
    assert widths["distances_0"][1] == widths["distances_1"][1]  # type: ignore[index]

"""The page as a list of blocks, rendered to HTML and to Markdown by one escaping function each."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    pass


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # shown highlighted: a caveat the reader must not miss


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report folder, chosen by the report (never run-provided)
    caption: str
    width: int | None = None  # CSS pixels in a gallery: one scale for every figure of a kind


@dataclass(frozen=True)
class Animation:
    gif: str | None
    mp4: str | None
    caption: str


@dataclass(frozen=True)
class Gallery:
    """Figures side by side (one row in HTML, one after another in Markdown)."""

    images: tuple[Image, ...]
    caption: str


@dataclass(frozen=True)
class ScrubberFrame:
    path: str  # relative to the report folder, chosen by the report
    words: str  # what the frame shows: epoch, accuracy, silhouette


@dataclass(frozen=True)
class Scrubber:
    """Frames stepped through with a slider (HTML); Markdown shows the last one."""

    frames: tuple[ScrubberFrame, ...]
    caption: str


Block = Heading | Paragraph | Table | Image | Gallery | Animation | Scrubber


# The page's only script, a constant: the content-security policy allows exactly this text by
# its hash, so nothing a run's name or config holds can ever run. Frames and words come from the
# figure's data-frames attribute (JSON, HTML-escaped like any attribute).
SCRUBBER_SCRIPT = """
document.querySelectorAll("figure.scrubber").forEach(function (box) {
  var slider = box.querySelector("input"), image = box.querySelector("img");
  var words = box.querySelector("output"), frames = JSON.parse(box.dataset.frames);
  function show() {
    var frame = frames[Number(slider.value)];
    image.src = frame[0]; image.alt = frame[1]; words.textContent = frame[1];
  }
  slider.addEventListener("input", show);
  box.addEventListener("keydown", function (event) {
    var step = {ArrowLeft: -1, ArrowRight: 1}[event.key];
    if (!step || event.target === slider) return;  // the slider steps by itself
    slider.value = Number(slider.value) + step; show(); event.preventDefault();
  });
});
"""


SCRUBBER_HASH = base64.b64encode(hashlib.sha256(SCRUBBER_SCRIPT.encode()).digest()).decode()


def _scrubber_html(block: Scrubber) -> str:
    frames = json.dumps([[_url(frame.path), frame.words] for frame in block.frames])
    last = block.frames[-1]
    words = html.escape(last.words)
    return (
        f'<figure class="scrubber" tabindex="0" data-frames="{html.escape(frames)}">'
        f'<label>epoch <input type="range" min="0" max="{len(block.frames) - 1}"'
        f' value="{len(block.frames) - 1}" step="1" aria-label="epoch"></label>'
        f" <output>{words}</output>"
        f'<img src="{html.escape(_url(last.path))}" alt="{words}">'
        f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
    )


def _url(path: str) -> str:
    return urllib.parse.quote(path)


def render_html(title: str, blocks: Sequence[Block]) -> str:
    """A standalone page: inline style, no script, no network."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 4)
            anchor = re.sub(r"[^a-z0-9]+", "-", block.text.lower()).strip("-")
            parts.append(
                f'<h{level} id="{html.escape(anchor)}">{html.escape(block.text)}</h{level}>'
            )
        elif isinstance(block, Paragraph):
            css = ' class="note"' if block.note else ""
            parts.append(f"<p{css}>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            # In its own scrolling box: a wide table never widens the page on a phone.
            parts.append(
                f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        elif isinstance(block, Image):
            caption = html.escape(block.caption)
            parts.append(
                f'<figure><img src="{html.escape(_url(block.path))}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif isinstance(block, Gallery):
            cells = "".join(
                f'<figure><img src="{html.escape(_url(image.path))}"'
                + (f' width="{image.width}"' if image.width else "")
                + f' alt="{html.escape(image.caption)}">'
                f"<figcaption>{html.escape(image.caption)}</figcaption></figure>"
                for image in block.images
            )
            parts.append(
                f'<div class="gallery">{cells}</div>'
                f'<p class="caption">{html.escape(block.caption)}</p>'
            )
        elif isinstance(block, Animation):
            caption = html.escape(block.caption)
            inner = ""
            if block.gif:
                inner += f'<img src="{html.escape(_url(block.gif))}" alt="{caption}">'
            if block.mp4:
                # A link, not a player: a preload-less <video> shows as a black box, and the
                # GIF above already plays the same frames.
                source = html.escape(_url(block.mp4))
                inner += f'<p><a href="{source}">The same as an MP4 video</a></p>'
            parts.append(f"<figure>{inner}<figcaption>{caption}</figcaption></figure>")
        elif isinstance(block, Scrubber) and block.frames:
            parts.append(_scrubber_html(block))
    body = "\n".join(parts)
    scrubbing = any(isinstance(block, Scrubber) and block.frames for block in blocks)
    # No script may run in a report but the scrubber's own, allowed by its hash.
    scripts = f"'sha256-{SCRUBBER_HASH}'" if scrubbing else "'none'"
    script = f"<script>{SCRUBBER_SCRIPT}</script>\n" if scrubbing else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="script-src {scripts};'
        " object-src 'none'; base-uri 'none'; form-action 'none'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n{script}</body>\n</html>\n"
    )


PAGE_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d1d1f;
       background: #fff; margin: 0; line-height: 1.5; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.8rem; margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { margin-top: 1.6rem; }
p.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 0.8rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
thead th { background: #f3f3f5; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; }
figure img, figure video { max-width: 100%; height: auto; display: block; }
figcaption, p.caption { color: #555; font-size: 0.9rem; }
div.gallery { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: flex-start; }
/* Each image at its given width (one scale for all): a figure kind shows at one size, alone
   or beside another. */
div.gallery figure { flex: 0 1 auto; min-width: 0; margin: 0; text-align: center; }
div.table-wrap { overflow-x: auto; max-width: 100%; }
div.table-wrap table { margin: 0; }
figure.scrubber label { font-size: 0.9rem; }
figure.scrubber input { width: min(24rem, 60vw); vertical-align: middle; }
figure.scrubber output { display: block; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
/* Narrow screens: figures keep a readable width and scroll sideways in the page's box. */
figure { overflow-x: auto; max-width: 100%; }
figure > img { min-width: 360px; }
main > figure > img { min-width: 560px; }  /* a full-width figure's text stays legible */
@media (max-width: 600px) { main { padding: 1rem 0.8rem 3rem; } }
"""


# Inline syntax anywhere (emphasis, code, links, tables, strikethrough) and block syntax at the
# start of a line (headings, lists, quotes); `<`, `>` and `&` become entities first.
_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]|~])")


_MARKDOWN_LINE_START = re.compile(r"^(\s*\d*)([#+\-=>]|(?<=\d)[.)])")


# Inside a table cell only a pipe, a backslash and inline markup need escaping: line-start
# syntax (10. or -0.00) cannot start a block there, and "10\.00%" is unreadable as text.
_MARKDOWN_CELL = re.compile(r"([\\`*_|])")


def _neutralise_html(text: str) -> str:
    """No tag can start without a '<' (and no entity without '&'): '->' stays readable."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def markdown_cell(text: str) -> str:
    """Literal text in a Markdown table cell, readable as plain text."""
    return _MARKDOWN_CELL.sub(r"\\\1", _neutralise_html(text)).replace("\n", " ")


def markdown_escape(text: str) -> str:
    """Literal text in Markdown: HTML is neutralised, emphasis/link/table syntax backslashed."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", _neutralise_html(text)).replace("\n", " ")
    return _MARKDOWN_LINE_START.sub(r"\1\\\2", escaped, count=1)


def render_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * min(max(block.level, 1), 4) + " " + markdown_escape(block.text))
        elif isinstance(block, Paragraph):
            text = markdown_escape(block.text)
            parts.append(f"> **Note:** {text}" if block.note else text)
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(markdown_cell(c) for c in block.columns) + " |",
                "|" + "---|" * len(block.columns),
            ]
            lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{markdown_escape(block.caption)}]({_url(block.path)})")
        elif isinstance(block, Gallery):
            images = [
                f"![{markdown_escape(image.caption)}]({_url(image.path)})" for image in block.images
            ]
            parts.append(" ".join(images) + "\n\n" + markdown_escape(block.caption))
        elif isinstance(block, Animation):
            lines = []
            if block.gif:
                lines.append(f"![{markdown_escape(block.caption)}]({_url(block.gif)})")
            if block.mp4:
                lines.append(f"[MP4 video]({_url(block.mp4)})")
            parts.append("\n\n".join(lines))
        elif isinstance(block, Scrubber) and block.frames:
            last = block.frames[-1]
            parts.append(
                f"![{markdown_escape(last.words)}]({_url(last.path)})\n\n"
                + markdown_escape(f"{block.caption} (The HTML page steps through every epoch.)")
            )
    return "\n\n".join(parts) + "\n"

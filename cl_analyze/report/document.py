"""The page as a list of blocks, rendered to HTML and to Markdown by one escaping function each."""

from __future__ import annotations

import html
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


Block = Heading | Paragraph | Table | Image | Gallery | Animation


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
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            caption = html.escape(block.caption)
            parts.append(
                f'<figure><img src="{html.escape(_url(block.path))}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif isinstance(block, Gallery):
            cells = "".join(
                f'<figure><img src="{html.escape(_url(image.path))}"'
                f' alt="{html.escape(image.caption)}">'
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
                source = html.escape(_url(block.mp4))
                inner += (
                    f'<video controls preload="none" src="{source}"></video>'
                    f'<p><a href="{source}">Download the MP4</a></p>'
                )
            parts.append(f"<figure>{inner}<figcaption>{caption}</figcaption></figure>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No script may run in a report, whatever a run's name or config holds.
        '<meta http-equiv="Content-Security-Policy" content="script-src \'none\';'
        " object-src 'none'; base-uri 'none'; form-action 'none'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
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
div.gallery { display: flex; gap: 0.6rem; align-items: flex-start; }
div.gallery figure { flex: 1 1 0; min-width: 0; margin: 0; text-align: center; }
"""


# Inline syntax anywhere (emphasis, code, links, tables, strikethrough) and block syntax at the
# start of a line (headings, lists, quotes); `<`, `>` and `&` become entities first.
_MARKDOWN_INLINE = re.compile(r"([\\`*_{}\[\]|~])")


_MARKDOWN_LINE_START = re.compile(r"^(\s*\d*)([#+\-=>]|(?<=\d)[.)])")


def markdown_escape(text: str) -> str:
    """Literal text in Markdown: HTML is neutralised, emphasis/link/table syntax backslashed."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", " ")
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
                "| " + " | ".join(markdown_escape(c) for c in block.columns) + " |",
                "|" + "---|" * len(block.columns),
            ]
            lines += [
                "| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in block.rows
            ]
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
    return "\n\n".join(parts) + "\n"

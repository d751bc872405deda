"""HTML building blocks of a report page: escaped text, tables, embedded PNGs, markdown and collapsible JSON.

Every piece of text goes through `html.escape` (markdown is rendered with raw HTML switched off), and every
picture is inlined as a base64 data URI, so the page is one file that opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
.meta { color: #59636e; font-size: .9em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
tr:nth-child(even) td { background: #f8fafc; }
h4.table-title { margin: 1.2em 0 .2em; }
img { max-width: 100%; height: auto; }
figure { margin: 1em 0; }
figcaption { color: #59636e; font-size: .85em; }
.warning, blockquote { background: #fff4d6; border-left: 5px solid #d4a72c; margin: .8em 0;
                       padding: .5em 1em; }
.warning strong { color: #7d4e00; }
blockquote p { margin: .2em 0; }
details { margin: .8em 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
code { background: #f0f3f6; padding: 0 .25em; border-radius: 3px; }
.item-filters { display: flex; gap: 1.5em; align-items: center; margin: .4em 0; font-size: .9em; }
.item-count { color: #59636e; }
.item-list { max-height: 70vh; overflow-y: auto; border: 1px solid #d0d7de; padding: 0 .6em; }
details.item { margin: 3px 0; padding-left: .5em; border-left: 4px solid; }
details.item > summary { font-weight: normal; padding: .2em 0; font-size: .9em; }
details.item.correct { border-left-color: #1a7f37; }
details.item.incorrect { border-left-color: #cf222e; }
details.item.correct .verdict { color: #1a7f37; font-weight: 700; }
details.item.incorrect .verdict { color: #cf222e; font-weight: 700; }
.item-body { padding: 0 0 .6em 1.2em; }
.item-body h5 { margin: .7em 0 .2em; }
.item-body pre { white-space: pre-wrap; margin: .2em 0; }
.msg .role { font-size: .8em; color: #59636e; text-transform: uppercase; }
.by { color: #59636e; }
tr.gold td { background: #dafbe1; }
.decides { font-weight: 700; background: #fff4d6; }
"""


@dataclass
class Table:
    """A titled table; cells are formatted by `cell` (None as a dash, floats to two decimals)."""

    title: str
    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def esc(value: Any) -> str:
    """`value` as text that is safe inside HTML."""
    return html.escape(str(value))


def cell(value: Any) -> str:
    """One table cell as text: None as a dash, floats to two decimals, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in row) + "</tr>\n" for row in table.rows)
    title = f'<h4 class="table-title">{esc(table.title)}</h4>\n'
    return f"{title}<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_html(data: bytes, caption: str) -> str:
    """A PNG (its bytes) inlined as a figure with a caption."""
    return f'<figure><img src="{png_uri(data)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>\n'


def warnings_html(warnings: list[str]) -> str:
    return "".join(f'<div class="warning"><strong>warning:</strong> {esc(w)}</div>\n' for w in warnings)


def json_details(summary: str, obj: Any) -> str:
    """`obj` as indented JSON inside a collapsed <details> element."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return f"<details><summary>{esc(summary)}</summary>\n<pre>{esc(text)}</pre>\n</details>\n"


def _inline_image(self, tokens, idx, options, env) -> str:
    """markdown-it image rule: a PNG file next to the markdown becomes a data URI (and is remembered)."""
    token = tokens[idx]
    path = (env["base"] / unquote(str(token.attrGet("src") or ""))).resolve()
    if path.suffix.lower() == ".png" and path.is_file():
        token.attrSet("src", png_uri(path.read_bytes()))
        env["embedded"].add(path)
    return self.image(tokens, idx, options, env)


def markdown_html(text: str, base: Path, embedded: set[Path]) -> str:
    """Markdown (tables on, raw HTML escaped) as HTML; PNGs it links are inlined and added to `embedded`."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("image", _inline_image)
    return md.render(text, {"base": Path(base), "embedded": embedded})


def page_html(title: str, body: str) -> str:
    """The whole page: head with inline CSS, then `body` (already HTML)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )

"""The report's content as blocks, and its two renderings: a self-contained HTML page and Markdown.

Both renderings walk the same list of blocks, so the HTML page and ``report.md`` say the same
things. The HTML page has its CSS inline, loads nothing from the network and refers to its
figures by relative paths (``figures/NAME.png``), so it works opened from disk.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import List, Sequence, Union


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; ``note`` paragraphs (what was not measured, why) are set apart in HTML."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Items:
    """A bullet list of plain-text items."""

    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    #: per row, a CSS class for HTML (``skipped``, ``failed``, ``regression``) or ""
    classes: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class Figure:
    """A figure file, ``path`` relative to the report directory, with its caption."""

    path: str
    caption: str


Block = Union[Heading, Text, Items, Table, Figure]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1300px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
td:first-child, th:first-child, td.text { text-align: left; }
tr.skipped td { color: #777; background: #f7f7f7; font-style: italic; }
tr.failed td { background: #fdecea; }
tr.regression td { background: #fdecea; font-weight: bold; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
p.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: .4em .8em; }
"""


def render_html(title: str, blocks: Sequence[Block]) -> str:
    """A complete HTML document: inline CSS, no scripts, figures as relative ``<img src>``."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f'<p{" class=note" if block.note else ""}>{html.escape(block.text)}</p>')
        elif isinstance(block, Items):
            out.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers))
            out.append("</tr></thead><tbody>")
            classes = list(block.classes) + [""] * (len(block.rows) - len(block.classes))
            for row, css in zip(block.rows, classes):
                cells = "".join(
                    f'<td{" class=text" if _is_text(cell) else ""}>{html.escape(cell)}</td>' for cell in row
                )
                out.append(f'<tr{f" class={css}" if css else ""}>{cells}</tr>')
            out.append("</tbody></table>")
        elif isinstance(block, Figure):
            out.append(
                f'<figure><a href="{html.escape(block.path)}"><img src="{html.escape(block.path)}"'
                f' alt="{html.escape(block.caption)}"></a><figcaption>{html.escape(block.caption)}</figcaption></figure>'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _is_text(cell: str) -> bool:
    return bool(cell) and not (cell[0].isdigit() or cell[0] in "+-." or cell in ("–",))


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    """The same blocks as GitHub-flavoured Markdown (for ``$GITHUB_STEP_SUMMARY``). Text from the
    runs is HTML-escaped: GitHub renders inline HTML in Markdown, and names come from user files."""
    out: List[str] = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {_md_text(block.text)}", ""]
        elif isinstance(block, Text):
            out += [f"> {_md_text(block.text)}" if block.note else _md_text(block.text), ""]
        elif isinstance(block, Items):
            out += [f"- {_md_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(out)


def _md_text(text: str) -> str:
    return html.escape(str(text), quote=False)


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|").replace("\n", " ") or " "

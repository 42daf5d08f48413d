"""The report's content as blocks, and its two renderings: a self-contained HTML page and Markdown.

Both renderings walk the same list of blocks, so the HTML page and ``report.md`` say the same
things. The HTML page has its CSS inline, loads nothing from the network and refers to its
figures by relative paths (``figures/NAME.png``), so it works opened from disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Union
from urllib.parse import quote

from ptqcore.results.markup import html_text, md_cell, md_text


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
        f"<title>{html_text(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html_text(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html_text(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f'<p{" class=note" if block.note else ""}>{html_text(block.text)}</p>')
        elif isinstance(block, Items):
            out.append("<ul>" + "".join(f"<li>{html_text(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{html_text(h)}</th>" for h in block.headers))
            out.append("</tr></thead><tbody>")
            classes = list(block.classes) + [""] * (len(block.rows) - len(block.classes))
            for row, css in zip(block.rows, classes):
                cells = "".join(
                    f'<td{" class=text" if _is_text(cell) else ""}>{html_text(cell)}</td>' for cell in row
                )
                out.append(f'<tr{f" class={css}" if css else ""}>{cells}</tr>')
            out.append("</tbody></table>")
        elif isinstance(block, Figure):
            out.append(
                f'<figure><a href="{html_text(block.path)}"><img src="{html_text(block.path)}"'
                f' alt="{html_text(block.caption)}"></a><figcaption>{html_text(block.caption)}</figcaption></figure>'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _is_text(cell: str) -> bool:
    return bool(cell) and not (cell[0].isdigit() or cell[0] in "+-." or cell in ("–",))


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    """The same blocks as GitHub-flavoured Markdown (for ``$GITHUB_STEP_SUMMARY``). All text is
    escaped with :func:`ptqcore.results.markup.md_text`: names and problems come from user files and run
    files, and GitHub renders inline HTML and Markdown."""
    out: List[str] = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {md_text(block.text)}", ""]
        elif isinstance(block, Text):
            out += [f"> {md_text(block.text)}" if block.note else md_text(block.text), ""]
        elif isinstance(block, Items):
            out += [f"- {md_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(md_cell(h) for h in block.headers) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            caption = md_text(block.caption)
            out += [f"![{caption}]({quote(block.path)})", "", f"*{caption}*", ""]
    return "\n".join(out)

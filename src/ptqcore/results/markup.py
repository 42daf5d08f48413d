"""Escaping of text that comes from run files (case and model names, problems, notes, environment
values) for every writer that shows it: the HTML report page, the report's Markdown and
``ptqcore compare --markdown`` (a CI job summary, where GitHub renders Markdown and inline HTML).

The one rule: record text is shown literally, on one line, and never becomes markup. HTML gets
:func:`html_text`; Markdown gets :func:`md_text` (prose), :func:`md_cell` (table cells) or
:func:`md_code` (a name in a code span), which HTML-escape first, so an ``<img>`` or ``<details>``
in a record stays text in both, and then take away what Markdown would act on: line breaks (new headings, list items, table
rows), table pipes, emphasis, links and images, code spans, and block markers at a line's start.
"""

from __future__ import annotations

import html
import re

#: Inline Markdown that acts anywhere: backslash, code, emphasis (``*``; ``_`` only where GFM would
#: read it, not inside words such as ``tiny_cnn``), links and images, strike-through, table pipes.
_MD_INLINE = re.compile(r"([\\`*\[\]~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
#: What starts a block at a line's start: headings, bullets, thematic breaks, setext lines (a
#: quote's ``>`` is already ``&gt;``, which Markdown does not read as a marker), and ordered items,
#: whose punctuation is escaped (``1\.``: a backslash cannot escape a digit).
_MD_BLOCK_START = re.compile(r"^([#+=-])")
_MD_ORDERED_START = re.compile(r"^(\d+)([.)])")


def one_line(text: object) -> str:
    """``str(text)`` with every run of whitespace, line breaks included, turned into one space."""
    return " ".join(str(text).split())


def html_text(text: object) -> str:
    """``text`` for HTML element content or a quoted attribute: ``& < > " '`` as entities."""
    return html.escape(str(text), quote=True)


def md_cell(text: object) -> str:
    """``text`` as the content of a GFM table cell that renders as exactly that text (one space
    for an empty text, which keeps the row's shape). Cells are read inline only, so no block marker
    needs escaping there."""
    return _MD_INLINE.sub(r"\\\1", html.escape(one_line(text), quote=False)) or " "


def md_text(text: object) -> str:
    """``text`` as one line of Markdown that renders as exactly that text wherever a block can
    start: a line's start, after a list item's ``- `` or a quote's ``> `` (``# x``, ``- x``,
    ``1. x`` stay text). An empty text stays empty."""
    escaped = md_cell(text).strip()
    return _MD_ORDERED_START.sub(r"\1\\\2", _MD_BLOCK_START.sub(r"\\\1", escaped))


def md_code(text: object) -> str:
    """``text`` as a Markdown code span on one line: fenced by more backticks than it holds in a row,
    padded where it starts or ends with one. Code spans show ``<`` and ``|`` literally, but GFM still
    splits table cells at ``|``: use :func:`md_cell` in tables."""
    line = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"

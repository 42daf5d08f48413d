"""Views of a :class:`~ptqcore.results.compare.Comparison`: an aligned terminal table, Markdown, JSON.

The terminal table and Markdown say the same things: the verdict (regressed or not and why),
environment changes between the runs, cases newly failing, newly skipped, added, removed, not run
and fixed, then one row per case and metric. Markdown (for a CI job summary) lists the changed
rows first and folds the full table into a ``<details>`` block.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ptqcore.options.thresholds import CompareLimits
from ptqcore.results.compare import IMPROVEMENT, MISSING, REGRESSION, SAME, Comparison, Row
from ptqcore.results.markup import md_cell, md_code, md_text

COLUMNS = ("case", "metric", "baseline", "candidate", "change", "verdict", "note")
TEXT_VERDICTS = {REGRESSION: "REGRESSION", IMPROVEMENT: "improved", SAME: "same", MISSING: "missing"}
MARKDOWN_VERDICTS = {REGRESSION: "**regression**", IMPROVEMENT: "improved", SAME: "same", MISSING: "missing"}


def format_value(value: Optional[float], unit: str) -> str:
    """A metric value for people: ``0.0736 ms``, ``97.10%``, ``52.6 KiB``, ``0.0963 s``."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.2f}%"
    if unit == "B":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:.4g} {unit}" if unit == "ms" else f"{value:.3g} {unit}"


def format_change(row: Row) -> str:
    """``+1.50x`` style ratio, or ``-3.00 pp`` for accuracy."""
    if row.change is None:
        return "-"
    if row.unit == "%":
        return f"{row.change:+.2f} pp"
    return "inf" if math.isinf(row.change) else f"{row.change:.2f}x"


def describe_limits(limits: CompareLimits) -> str:
    return (
        f"latency slower than {limits.latency_factor:g}x and Mann-Whitney p < {limits.p_value:g};"
        f" top-1 down by more than {limits.accuracy_pp:g} pp; size above {limits.size_factor:g}x;"
        f" build/export above {limits.build_factor:g}x; energy above {limits.energy_factor:g}x"
    )


def verdict_line(comparison: Comparison) -> str:
    metrics = len(comparison.rows_with(REGRESSION))
    failing = len(comparison.newly_failing)
    counts = (
        f"{len(comparison.rows_with(IMPROVEMENT))} improved, {len(comparison.rows_with(SAME))} same,"
        f" {len(comparison.rows_with(MISSING))} missing"
    )
    if comparison.regressed:
        return f"REGRESSED: {metrics} metric(s) regressed, {failing} case(s) newly failing; {counts}"
    return f"OK: no regression; {counts}"


def case_lists(comparison: Comparison) -> List[Tuple[str, List[Tuple[str, str]]]]:
    """(title, [(name, detail)]) for each non-empty list: cases by status change, then the environment."""
    lists = [
        (
            "newly failing (regression)",
            [(case, "; ".join(problems) or "failed") for case, problems in comparison.newly_failing],
        ),
        ("newly skipped", list(comparison.newly_skipped)),
        ("added", [(case, "") for case in comparison.added]),
        ("removed", [(case, "") for case in comparison.removed]),
        ("not run in the candidate", [(case, "") for case in comparison.not_run]),
        ("fixed", [(case, "") for case in comparison.fixed]),
        ("environment changes", [(key, f"{old} -> {new}") for key, old, new in comparison.environment_changes]),
        ("run notes", [(note, "") for note in comparison.notes]),
    ]
    return [(title, items) for title, items in lists if items]


def row_cells(row: Row, verdicts: dict) -> List[str]:
    return [
        row.case,
        row.metric,
        format_value(row.baseline, row.unit),
        format_value(row.candidate, row.unit),
        format_change(row),
        verdicts[row.verdict],
        row.note,
    ]


def render_text(comparison: Comparison) -> str:
    """The comparison as an aligned plain-text table with a verdict line at the end."""
    out = [f"ptqcore compare: {comparison.candidate} against baseline {comparison.baseline}"]
    out.append(f"limits: {describe_limits(comparison.limits)}")
    for title, items in case_lists(comparison):
        out.append("")
        out.append(f"{title}:")
        out.extend(f"  {name}: {detail}" if detail else f"  {name}" for name, detail in items)
    out.append("")
    table = [list(COLUMNS)] + [row_cells(row, TEXT_VERDICTS) for row in comparison.rows]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
    for cells in table:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    out.append("")
    out.append(verdict_line(comparison))
    return "\n".join(out) + "\n"


def _markdown_table(rows: Sequence[Row]) -> List[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [md_cell(cell) for cell in row_cells(row, TEXT_VERDICTS)]
        cells[COLUMNS.index("verdict")] = MARKDOWN_VERDICTS[row.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown for a CI job summary (``$GITHUB_STEP_SUMMARY``); all text from the
    runs (names, problems, notes, environment values) escaped by :mod:`ptqcore.results.markup`."""
    candidate, baseline = md_code(Path(comparison.candidate).name), md_code(Path(comparison.baseline).name)
    out = [f"### ptqcore compare: {candidate} against {baseline}", ""]
    out.append(f"**{md_text(verdict_line(comparison))}**")
    out.append("")
    out.append(f"Limits: {md_text(describe_limits(comparison.limits))}.")
    for title, items in case_lists(comparison):
        out += ["", f"**{title[0].upper() + title[1:]}**", ""]
        out.extend(f"- {md_code(name)}: {md_text(detail)}" if detail else f"- {md_code(name)}" for name, detail in items)
    changed = [row for row in comparison.rows if row.verdict != SAME]
    out += ["", "**Changed metrics**" if changed else "No metric changed beyond its limit.", ""]
    if changed:
        out += _markdown_table(changed) + [""]
    out += [f"<details><summary>All {len(comparison.rows)} comparisons</summary>", ""]
    out += _markdown_table(comparison.rows)
    out += ["", "</details>", ""]
    return "\n".join(out)


def comparisons_json(comparisons: Sequence[Comparison]) -> str:
    """Machine-readable verdicts: ``{"regressed", "limits", "comparisons": [...]}`` (strict JSON)."""
    document = {
        "regressed": any(comparison.regressed for comparison in comparisons),
        "limits": dict(comparisons[0].limits.__dict__) if comparisons else None,
        "comparisons": [comparison.as_dict() for comparison in comparisons],
    }
    return json.dumps(_finite(document), indent=2, allow_nan=False) + "\n"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(inner) for inner in value]
    return value

"""The calibration sweep of a run: INT8 top-1 drop per calibration method and size, per model.

A run sweeps calibration when its INT8 cases have more than one method (``--ptq-calibration all``)
or more than one size (``--ptq-calibration-size 32,128,512``); only then are the figure
(:func:`draw`) and the table (:func:`table`) made. One panel (one table row group) per model, and
per backend, device and batch size where the run has several of those. A case of the sweep without
a drop (skipped, failed, not run) is shown by its status, never as a bar of height 0. Imports
matplotlib (through :mod:`ptqcore.results.report.figures`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ptqcore.results.report.content import CaseView
from ptqcore.results.report.figures import blended_transform_factory, plt, save_figure
from ptqcore.results.report.page import Table

#: One colour per calibration method; others are drawn grey.
METHOD_COLORS = {"entropy": "#1f77b4", "minmax": "#d62728", "percentile": "#2ca02c"}
#: The fields that name a panel where the run has several values of them.
PANEL_FIELDS = ("backend", "device", "batch_size")
NOT_MEASURED = "–"

Cell = Tuple[str, int]


def _int8(cases: Sequence[CaseView]) -> List[CaseView]:
    return [case for case in cases if case.precision == "int8"]


def methods_and_sizes(cases: Sequence[CaseView]) -> Tuple[List[str], List[int]]:
    """The calibration methods (in first-seen order) and sizes (ascending) of the run's INT8 cases."""
    int8 = _int8(cases)
    methods = list(dict.fromkeys(str(case.record.get("calibration")) for case in int8))
    sizes = sorted({int(case.record.get("calibration_size") or 0) for case in int8})
    return methods, sizes


def is_sweep(cases: Sequence[CaseView]) -> bool:
    """True when the run's INT8 cases have more than one calibration method or size."""
    methods, sizes = methods_and_sizes(cases)
    return len(methods) > 1 or len(sizes) > 1


def panels(cases: Sequence[CaseView]) -> Dict[str, Dict[Cell, CaseView]]:
    """INT8 cases by panel title (the model, plus the backend, device, batch size where they vary),
    then by (method, size); panels in the run's case order."""
    int8 = _int8(cases)
    varying = [name for name in PANEL_FIELDS if len({str(case.record.get(name)) for case in int8}) > 1]
    out: Dict[str, Dict[Cell, CaseView]] = {}
    for case in int8:
        title = " ".join([str(case.record.get("model"))] + [
            f"{'b' if name == 'batch_size' else ''}{case.record.get(name)}" for name in varying])
        cell = (str(case.record.get("calibration")), int(case.record.get("calibration_size") or 0))
        out.setdefault(title, {})[cell] = case
    return out


def _status(case: CaseView) -> str:
    return case.status if case.status in ("skipped", "failed", "not run") else "not measured"


def table(cases: Sequence[CaseView]) -> Table:
    """One row per panel and method, one column per size: the drop in pp, or the case's status."""
    methods, sizes = methods_and_sizes(cases)
    rows = []
    for title, cells in panels(cases).items():
        for method in methods:
            if not any((method, size) in cells for size in sizes):
                continue
            row = [title, method]
            for size in sizes:
                case = cells.get((method, size))
                drop = case.get("accuracy_drop_pp") if case is not None else None
                row.append(NOT_MEASURED if case is None else _status(case) if drop is None else f"{drop:.2f}")
            rows.append(row)
    return Table(("model", "calibration", *[f"drop pp, {size} images" for size in sizes]), rows)


def draw(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Grouped bars per panel: x = calibration size, one bar per method, height = top-1 drop (pp).
    Returns False (nothing written) when the run is no sweep or no case of it has a drop."""
    if not is_sweep(cases) or not any(case.get("accuracy_drop_pp") is not None for case in _int8(cases)):
        return False
    methods, sizes = methods_and_sizes(cases)
    groups = panels(cases)
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns + 1, 3.4 * rows + 1), squeeze=False)
    width = 0.8 / len(methods)
    for ax, (title, cells) in zip([ax for row in axes for ax in row], groups.items()):
        for m, method in enumerate(methods):
            for s, size in enumerate(sizes):
                case = cells.get((method, size))
                if case is None:
                    continue
                x = s - 0.4 + width * (m + 0.5)
                drop = case.get("accuracy_drop_pp")
                if drop is None:  # its status, from the bottom of the panel up: never a bar of height 0
                    ax.text(x, 0.03, _status(case), rotation=90, ha="center", va="bottom", fontsize=8, color="#444",
                            transform=blended_transform_factory(ax.transData, ax.transAxes))
                    continue
                ax.bar(x, drop, width=width, color=METHOD_COLORS.get(method, "#7f7f7f"),
                       hatch="xx" if case.status == "failed" else None)
                ax.annotate(f"{drop:.2f}", (x, drop), xytext=(0, 2 if drop >= 0 else -9), textcoords="offset points",
                            ha="center", fontsize=7)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([str(size) for size in sizes])
        ax.set_xlabel("calibration images (nested subsets)")
        ax.set_ylabel("top-1 drop, pp")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", color="#ddd", linewidth=0.6)
        ax.set_axisbelow(True)
    for ax in [ax for row in axes for ax in row][len(groups):]:
        ax.set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=METHOD_COLORS.get(method, "#7f7f7f")) for method in methods]
    labels = list(methods)
    if any(case.status == "failed" for case in _int8(cases)):
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="xx"))
        labels.append("hatched: the case failed a check")
    shown = [ax for row in axes for ax in row][len(groups) - 1]
    shown.legend(handles, labels, loc="best", fontsize=7, title="calibration", title_fontsize=7)
    return save_figure(fig, path, "INT8 top-1 drop per calibration method and size", footer)

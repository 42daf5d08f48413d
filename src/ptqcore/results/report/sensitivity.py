"""The per-layer sensitivity of a run: the top layers of each INT8 case that has a ranking.

A record has ``sensitivity`` where it was computed (``--ptq-sensitivity``, an INT8 case that failed
its drop limit, or the plain INT8 case an ``int8-mixed`` case repaired; :mod:`ptqcore.study.sensitivity`).
One horizontal bar chart panel per such case (:func:`draw`): its :data:`TOP` layers by the noise
their quantization adds, largest on top, the layers an ``int8-mixed`` case of the same model kept in
float drawn in a second colour. The table (:func:`table`) gives the ``int8-mixed`` trade-off next to
plain INT8 and FP16. Imports matplotlib (through :mod:`ptqcore.results.report.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from ptqcore.results.report.content import CaseView
from ptqcore.results.report.figures import panel_grid, plt, save_figure, shorten
from ptqcore.results.report.page import Table

#: Layers per panel.
TOP = 10
NOT_MEASURED = "–"
SAME_CASE = ("model", "backend", "device", "batch_size", "calibration", "calibration_size")


def ranked(cases: Sequence[CaseView]) -> List[CaseView]:
    """The cases whose record holds a non-empty ranking, in the run's order."""
    return [case for case in cases if isinstance(case.record.get("sensitivity"), list) and case.record["sensitivity"]]


def _twin(case: CaseView, cases: Sequence[CaseView], precision: str) -> Optional[CaseView]:
    return next((other for other in cases if other.precision == precision
                 and all(other.record.get(k) == case.record.get(k) for k in SAME_CASE)), None)


def draw(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """One panel per ranked case (module docstring); False (nothing written) when no case has one."""
    panels = ranked(cases)
    if not panels:
        return False
    fig, axes = panel_grid(len(panels), 7.5, 0.32 * TOP + 1.6)
    for ax, case in zip(axes, panels):
        layers = case.record["sensitivity"][:TOP]
        mixed = _twin(case, cases, "int8-mixed")
        kept = set(mixed.record.get("float_layers") or []) if mixed is not None else set()
        values = [item.get("added_nsr") or 0.0 for item in layers]
        colors = ["#ff7f0e" if item.get("node") in kept else "#d62728" for item in layers]
        y = list(range(len(layers)))[::-1]
        ax.barh(y, values, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{shorten(str(item.get('node')), 42)} ({item.get('op')})" for item in layers], fontsize=7)
        ax.set_xlabel("noise added by its quantization (NSR out - NSR in)")
        ax.set_title(str(case.record.get("case")), fontsize=9)
        ax.grid(axis="x", color="#ddd", linewidth=0.6)
        ax.set_axisbelow(True)
    handles = [plt.Rectangle((0, 0), 1, 1, color="#d62728"), plt.Rectangle((0, 0), 1, 1, color="#ff7f0e")]
    axes[-1].legend(handles, ["INT8", "kept in float by int8-mixed"], loc="lower right", fontsize=7)
    return save_figure(fig, path, f"Top {TOP} layers by the error their INT8 quantization adds", footer)


def _fmt(value, spec: str) -> str:
    return NOT_MEASURED if value is None else format(value, spec)


def table(cases: Sequence[CaseView]) -> Table:
    """One row per ``int8-mixed`` case: plain INT8 and mixed drops, float layers, their MAC share,
    sizes and latency p50 of plain INT8, int8-mixed and FP16 of the same model, backend and device."""
    rows = []
    for mixed in [case for case in cases if case.precision == "int8-mixed"]:
        plain = _twin(mixed, cases, "int8")
        fp16 = next((c for c in cases if c.precision == "fp16" and all(
            c.record.get(k) == mixed.record.get(k) for k in ("model", "backend", "device", "batch_size"))), None)
        layers = mixed.record.get("float_layers")
        share = mixed.get("float_macs_share")

        def p50(case: Optional[CaseView]) -> str:
            return _fmt(case.get("latency_ms", "p50") if case is not None else None, ".2f")

        rows.append([
            str(mixed.record.get("case")), mixed.status,
            _fmt(plain.get("accuracy_drop_pp") if plain is not None else None, ".2f"),
            _fmt(mixed.get("accuracy_drop_pp"), ".2f"),
            NOT_MEASURED if layers is None else str(len(layers)),
            NOT_MEASURED if share is None else f"{100 * share:.1f}%",
            p50(plain), p50(mixed), p50(fp16),
            str(mixed.record.get("mixed_note") or mixed.record.get("skip_reason") or ""),
        ])
    return Table(("case", "status", "INT8 drop pp", "mixed drop pp", "float layers", "their MACs",
                  "INT8 p50 ms", "mixed p50 ms", "FP16 p50 ms", "note"), rows)


def has_mixed(cases: Sequence[CaseView]) -> bool:
    return any(case.precision == "int8-mixed" for case in cases)



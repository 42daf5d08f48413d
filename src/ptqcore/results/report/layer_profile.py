"""Where the time goes, per layer: the report's figures and table from ``--ptq-profile-layers`` records.

* :func:`draw_time`: per model one row of two panels, each precision a stacked bar of its profiled
  time, by category (compute, float, Q/DQ, reformat) on the left and by op type on the right (the
  :data:`TOP_OPS` largest of the model, the rest summed as "other"), so DenseNet's hundreds of layers
  stay readable.
* :func:`draw_changes`: per INT8 case the FP32 (CPU) / FP16 (GPU) -> INT8 change of its layer
  groups that changed most (the record keeps those; the rest are one "other" bar).
* :func:`table`: per INT8 case its speed-up, its time by category and the measured causes where INT8
  is not faster; and the profiles whose total is far from the measured latency, flagged.

Imports matplotlib (through :mod:`ptqcore.results.report.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from ptqcore.results.report.content import CaseView
from ptqcore.results.report.figures import panel_grid, plt, save_figure, shorten
from ptqcore.results.report.page import Table

TOP_OPS = 7
CATEGORY_COLORS = {"compute": "#1f77b4", "float": "#ff7f0e", "qdq": "#d62728", "reformat": "#9467bd"}
CATEGORY_NAMES = {"compute": "compute", "float": "left in float", "qdq": "Q/DQ", "reformat": "reformat"}
OP_COLORS = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bbbbbb")
NOT_MEASURED = "–"


def profiled(cases: Sequence[CaseView]) -> List[CaseView]:
    return [case for case in cases if isinstance(case.record.get("layer_profile"), Mapping)]


def _by_model(cases: Sequence[CaseView]) -> Dict[str, List[CaseView]]:
    out: Dict[str, List[CaseView]] = {}
    for case in profiled(cases):
        out.setdefault(str(case.record.get("model")), []).append(case)
    return out


def _stack(ax, labels: Sequence[str], parts: Sequence[Mapping[str, float]], names: Sequence[str], colors) -> None:
    y = list(range(len(labels)))
    left = [0.0] * len(labels)
    for name, color in zip(names, colors):
        values = [float(part.get(name, 0.0)) for part in parts]
        ax.barh(y, values, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel("profiled time per inference (ms)")
    ax.grid(axis="x", color="#ddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside, not over, the bars


def _ms(section) -> Dict[str, float]:
    return {name: float(item.get("ms") or 0.0) for name, item in (section or {}).items() if isinstance(item, Mapping)}


def draw_time(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Stacked profiled time per precision, by category and by op type (module docstring)."""
    models = _by_model(cases)
    if not models:
        return False
    fig, axes = plt.subplots(len(models), 2, figsize=(17, 1.4 + 1.2 * sum(len(v) for v in models.values())),
                             squeeze=False)
    for row, (model, group) in zip(axes, models.items()):
        labels = [str(case.record.get("precision")) for case in group]
        by_category = [_ms(case.record["layer_profile"].get("by_category")) for case in group]
        names = [name for name in CATEGORY_COLORS if any(part.get(name) for part in by_category)]
        _stack(row[0], labels, [{CATEGORY_NAMES[k]: v for k, v in part.items()} for part in by_category],
               [CATEGORY_NAMES[n] for n in names], [CATEGORY_COLORS[n] for n in names])
        row[0].set_title(f"{model}: by category", fontsize=9)
        by_op = [_ms(case.record["layer_profile"].get("by_op_type")) for case in group]
        totals: Dict[str, float] = {}
        for part in by_op:
            for name, ms in part.items():
                totals[name] = totals.get(name, 0.0) + ms
        top = sorted(totals, key=lambda name: -totals[name])[:TOP_OPS]
        grouped = [{**{name: part.get(name, 0.0) for name in top},
                    "other": sum(ms for name, ms in part.items() if name not in top)} for part in by_op]
        _stack(row[1], labels, grouped, top + ["other"], OP_COLORS)
        row[1].set_title(f"{model}: by op type (top {TOP_OPS})", fontsize=9)
    return save_figure(fig, path, "Where the time goes: the runtime's per-layer profile, per precision", footer)


def changed(cases: Sequence[CaseView]) -> List[CaseView]:
    return [case for case in cases if isinstance(case.record.get("layer_changes"), Mapping)]


def draw_changes(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Per INT8 case, its layer groups' change in time against the float twin (module docstring)."""
    panels = changed(cases)
    if not panels:
        return False
    fig, axes = panel_grid(len(panels), 8, 5.6)
    for ax, case in zip(axes, panels):
        changes = case.record["layer_changes"]
        items = [(f"{shorten(str(r.get('group')), 46)} ({r.get('op') or r.get('reference_op') or '?'})",
                  float(r.get("delta_ms") or 0.0)) for r in changes.get("rows") or []]
        other = changes.get("other") or {}
        if other.get("groups"):
            items.append((f"other {other['groups']} layer groups", float(other.get("delta_ms") or 0.0)))
        y = list(range(len(items)))
        ax.barh(y, [v for _, v in items], color=["#d62728" if v > 0 else "#2ca02c" for _, v in items])
        ax.set_yticks(y)
        ax.set_yticklabels([name for name, _ in items], fontsize=7)
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.axvline(0, color="#444", linewidth=0.8)
        ax.set_xlabel("INT8 minus its float twin, ms per inference (red: slower in INT8)", fontsize=8)
        ax.set_title(f"{case.record.get('case')}\n{changes.get('reference')}: {changes.get('reference_ms', 0):.3f} ms ->"
                     f" INT8 {changes.get('ms', 0):.3f} ms ({changes.get('matched')} groups matched)", fontsize=8)
        ax.grid(axis="x", color="#ddd", linewidth=0.6)
        ax.set_axisbelow(True)
    return save_figure(fig, path, "Per-layer change from the float twin to INT8 (the groups that changed most)", footer)


def _share(profile: Mapping, category: str) -> str:
    item = (profile.get("by_category") or {}).get(category) or {}
    share = item.get("share")
    return NOT_MEASURED if share is None else f"{100 * share:.0f}%"


def table(cases: Sequence[CaseView]) -> Table:
    """One row per profiled case: profiled vs measured time (flagged when far apart), shares by
    category, and for INT8 the speed-up over its twin and the measured causes where it is not faster."""
    rows = []
    for case in profiled(cases):
        profile = case.record["layer_profile"]
        slowdown = case.record.get("int8_slowdown") if isinstance(case.record.get("int8_slowdown"), Mapping) else None
        changes = case.record.get("layer_changes")
        if slowdown:
            why = "; ".join(str(cause.get("text")) for cause in slowdown.get("causes") or []) or "no cause above 2%"
            speed = f"{slowdown.get('speedup', 0):.2f}x vs {slowdown.get('reference')}"
        elif isinstance(changes, Mapping):
            speedup = changes.get("speedup")
            why = "faster than its float twin" if speedup else "no latency to compare"
            speed = f"{speedup:.2f}x vs {changes.get('reference_precision') or 'its twin'}" if speedup else NOT_MEASURED
        else:
            why, speed = "", NOT_MEASURED
        ratio = profile.get("vs_latency")
        rows.append([
            str(case.record.get("case")), f"{float(profile.get('profiled_ms') or 0):.3f}",
            NOT_MEASURED if ratio is None else f"{100 * ratio:.0f}%" + (" (flagged)" if profile.get("flag") else ""),
            *(_share(profile, category) for category in CATEGORY_COLORS), speed, why,
        ])
    return Table(("case", "profiled ms", "of latency p50", "compute", "float", "Q/DQ", "reformat",
                  "speed-up", "where INT8 loses (measured)"), rows)

"""Compression techniques ranked per model, the way the sister paper did: size, latency, accuracy, time.

A run has a ranking when its records have more than one technique (``--ptq-techniques``). Every
compressed case (technique x precision, on one backend, device and batch size) of a model is scored
on four figures, each against the original model:

* **size reduction**: ``size_reduction`` (the original's PyTorch file / the case's file, dense);
  gzip's view (``size_reduction_compressed``, what pruning's zeros give) is in the table beside it;
* **latency reduction**: ``(p50 of the original at FP32 - this p50) / that p50`` in % (the FP32 case
  of technique ``ptq`` on the same backend, device and batch size: the runtime is the same, so only
  the technique and precision differ). The paper's "latency speed-up" is read as this reduction;
* **accuracy drop**: ``accuracy_drop_pp``, against the original's PyTorch base;
* **compression time**: the technique's own seconds (``compression_time_s``: pruning and fine-tuning,
  or distillation) + phase 1 (``export_s``) + phase 2 (``build_s``).

Each figure is ranked among the model's cases (1 = best, equal values share the better rank; a case
without the figure gets no rank for it) and cases are ordered by their mean rank: the table (:func:`table`) and the figure (:func:`draw`,
one row of four panels per model). Imports matplotlib (through :mod:`ptqcore.results.report.figures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ptqcore.results.report.content import CaseView
from ptqcore.results.report.figures import plt, save_figure
from ptqcore.results.report.page import Table

NOT_MEASURED = "–"
#: (key, axis label, True when larger is better)
METRICS = (
    ("size_reduction", "size reduction vs original (x)", True),
    ("latency_reduction_pct", "latency reduction vs original FP32 (%)", True),
    ("accuracy_drop_pp", "top-1 drop vs original (pp)", False),
    ("compression_s", "compression time (s)", False),
)
TECHNIQUE_COLORS = {"ptq": "#1f77b4", "prune": "#ff7f0e", "kd": "#2ca02c"}


@dataclass(frozen=True)
class Row:
    """One compressed case of a model with its four figures (None: not measured) and its mean rank."""

    model: str
    label: str
    technique: str
    status: str
    values: Dict[str, Optional[float]]
    size_reduction_gzip: Optional[float]
    mean_rank: Optional[float] = None


def _technique(case: CaseView) -> str:
    return str(case.record.get("technique") or "ptq")


def is_technique_run(cases: Sequence[CaseView]) -> bool:
    """True when the run's records have more than one technique."""
    return len({_technique(case) for case in cases}) > 1


def _compressed(cases: Sequence[CaseView]) -> List[CaseView]:
    return [case for case in cases if not case.is_base]


def _reference_p50(case: CaseView, cases: Sequence[CaseView]) -> Optional[float]:
    keys = ("model", "backend", "device", "batch_size", "dataset")
    for other in cases:
        if (other.precision == "fp32" and _technique(other) == "ptq"
                and all(other.record.get(k) == case.record.get(k) for k in keys)):
            return other.get("latency_ms", "p50")
    return None


def _compression_s(case: CaseView) -> Optional[float]:
    parts = [case.get("export_s"), case.get("build_s")]
    if any(part is None for part in parts):
        return None
    return sum(parts) + (case.get("compression_time_s") or 0.0)


def rows(cases: Sequence[CaseView]) -> Dict[str, List[Row]]:
    """The ranked rows per model (models in run order; rows by mean rank, unranked last)."""
    out: Dict[str, List[Row]] = {}
    for case in _compressed(cases):
        reference, mine = _reference_p50(case, cases), case.get("latency_ms", "p50")
        latency = None if reference is None or mine is None or reference <= 0 else (reference - mine) / reference * 100
        label = " ".join(str(x) for x in (case.record.get("technique") or "ptq", case.precision)) + (
            "" if case.record.get("backend") == "onnxruntime" else f" {case.record.get('backend')}")
        values = {"size_reduction": case.get("size_reduction"), "latency_reduction_pct": latency,
                  "accuracy_drop_pp": case.get("accuracy_drop_pp"), "compression_s": _compression_s(case)}
        out.setdefault(str(case.record.get("model")), []).append(
            Row(str(case.record.get("model")), label, _technique(case), case.status, values,
                case.get("size_reduction_compressed")))
    return {model: _ranked(model_rows) for model, model_rows in out.items()}


def _ranked(model_rows: List[Row]) -> List[Row]:
    ranks: Dict[int, List[float]] = {i: [] for i in range(len(model_rows))}
    for key, _, larger_better in METRICS:
        scored = [(row.values[key], i) for i, row in enumerate(model_rows) if row.values[key] is not None]
        scored.sort(key=lambda item: -item[0] if larger_better else item[0])
        for value, i in scored:
            ranks[i].append(float(1 + next(n for n, (v, _) in enumerate(scored) if v == value)))  # ties share
    ranked = [Row(r.model, r.label, r.technique, r.status, r.values, r.size_reduction_gzip,
                  sum(ranks[i]) / len(ranks[i]) if ranks[i] else None) for i, r in enumerate(model_rows)]
    return sorted(ranked, key=lambda r: (r.mean_rank is None, r.mean_rank or 0.0))


def _cell(value: Optional[float], digits: int = 2) -> str:
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def table(cases: Sequence[CaseView]) -> Table:
    """One row per compressed case, per model, best mean rank first."""
    out = []
    for model, model_rows in rows(cases).items():
        for row in model_rows:
            v = row.values
            out.append([model, row.label, _cell(row.mean_rank), _cell(v["size_reduction"]),
                        _cell(row.size_reduction_gzip), _cell(v["latency_reduction_pct"], 1),
                        _cell(v["accuracy_drop_pp"]), _cell(v["compression_s"], 1), row.status])
    return Table(("model", "technique, precision", "mean rank", "size reduction x", "gzip size reduction x",
                  "latency reduction %", "top-1 drop pp", "compression s", "status"), out)


def _family(technique: str) -> str:
    return "kd" if technique.startswith("kd_") else "prune" if technique.startswith("prune") else technique


def draw(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """One row of four horizontal bar panels per model, cases top to bottom by mean rank.
    Returns False (nothing written) when the run has one technique or no compressed case."""
    groups = rows(cases)
    if not is_technique_run(cases) or not groups:
        return False
    height = sum(0.32 * len(r) + 1.2 for r in groups.values()) + 0.8
    fig, axes = plt.subplots(len(groups), len(METRICS), figsize=(16, height), squeeze=False,
                             gridspec_kw={"height_ratios": [len(r) for r in groups.values()]})
    for axes_row, (model, model_rows) in zip(axes, groups.items()):
        for column, (ax, (key, title, _)) in enumerate(zip(axes_row, METRICS)):
            for y, row in enumerate(model_rows):
                value = row.values[key]
                if value is None:
                    ax.text(0, y, f" {row.status if row.status in ('skipped', 'failed') else 'not measured'}",
                            va="center", fontsize=7, color="#444")
                    continue
                ax.barh(y, value, color=TECHNIQUE_COLORS.get(_family(row.technique), "#7f7f7f"),
                        hatch="xx" if row.status == "failed" else None)
                ax.annotate(f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}", (value, y), xytext=(2, 0),
                            textcoords="offset points", va="center", fontsize=7)
            ax.set_yticks(range(len(model_rows)))
            ax.set_yticklabels([f"{row.label} ({_cell(row.mean_rank, 1)})" for row in model_rows] if column == 0
                               else [], fontsize=8)
            ax.set_ylim(len(model_rows) - 0.5, -0.5)
            ax.axvline(0.0, color="black", linewidth=0.6)
            ax.grid(axis="x", color="#ddd", linewidth=0.6)
            ax.set_axisbelow(True)
            ax.set_title(f"{model}: {title}" if column == 0 else title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in TECHNIQUE_COLORS.values()]
    axes[0][-1].legend(handles, list(TECHNIQUE_COLORS), loc="best", fontsize=7, title="technique (mean rank)",
                       title_fontsize=7)
    return save_figure(fig, path, "Compression techniques per model, best mean rank first", footer)


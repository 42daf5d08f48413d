"""The report's figures, drawn with matplotlib's Agg backend into PNG files.

Each function draws one figure from :class:`~ptqcore.results.report.content.CaseView` objects and returns
``True``, or returns ``False`` and writes nothing when none of the cases has the figure's data
(no GPU, no power source, no telemetry): the report then says "not measured". A case that was
skipped, or failed before the figure was measured, gets a hatched empty slot labelled with its
status, never a bar of height 0. Every figure names its units and, in its footer, the run, the
device and the software versions. Only this module imports matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from ptqcore.results.report.content import PHASES, CaseView, number  # noqa: E402

COLORS = {"base": "#7f7f7f", "fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728"}
PHASE_COLORS = {"export": "#1f77b4", "calibration": "#9467bd", "build": "#ff7f0e", "idle": "#bcbd22",
                "inference": "#2ca02c"}
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
MIB = float(1 << 20)
#: A value range wider than this factor is drawn on a log axis.
LOG_RANGE = 20.0
DPI = 100


def color(case: CaseView) -> str:
    return COLORS.get(case.precision, "#8c564b")


def _figure(rows: int, columns: int = 1, width: float = 12.0, row_height: float = 0.34):
    height = max(3.2, 1.6 + row_height * rows)
    fig, axes = plt.subplots(1, columns, figsize=(width, height), sharey=True, squeeze=False)
    return fig, list(axes[0])


def shorten(name: str, width: int) -> str:
    """``name``, or its last ``width - 1`` characters after an ellipsis (layer names end in what tells them apart)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def panel_grid(panels: int, panel_width: float, panel_height: float, columns: int = 2):
    """(figure, axes) of ``panels`` panels, at most ``columns`` a row; the axes left over are hidden."""
    columns = min(columns, panels)
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, panel_height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def save_figure(fig, path: Path, title: str, footer: str) -> bool:
    fig.suptitle(title, fontsize=13, fontweight="bold")
    fig.text(0.01, 0.005, footer, fontsize=8, color="#555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def _rows(ax, cases: Sequence[CaseView]) -> None:
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([case.label + ("  [FAILED]" if case.status == "failed" else "") for case in cases],
                       fontsize=9)
    ax.set_ylim(len(cases) - 0.5, -0.5)
    ax.grid(axis="x", color="#ddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _missing(ax, y: float, case: CaseView, height: float = 0.7) -> None:
    """A hatched empty slot across the axis at row ``y`` with the case's status text."""
    blend = blended_transform_factory(ax.transAxes, ax.transData)
    ax.add_patch(Rectangle((0.0, y - height / 2), 0.98, height, transform=blend, fill=False, hatch="///",
                           edgecolor="#bbb", linewidth=0.5))
    text = case.status_text if case.status in ("skipped", "failed", "not run") else "not measured"
    text = text if len(text) <= 90 else text[:87] + "..."
    ax.text(0.01, y, text, transform=blend, va="center", ha="left", fontsize=8, color="#444",
            bbox=dict(facecolor="white", edgecolor="none", pad=1))


def _maybe_log(ax, values: Sequence[float], axis: str = "x") -> bool:
    positive = [v for v in values if v is not None and v > 0]
    if positive and max(positive) / min(positive) > LOG_RANGE:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


def _hbars(ax, cases: Sequence[CaseView], value: Callable[[CaseView], Optional[float]], fmt: str,
           unit: str, at: Optional[Callable[[CaseView], Optional[float]]] = None) -> List[float]:
    """One bar per case with its value written at its end; hatched slots where there is none."""
    values = []
    for y, case in enumerate(cases):
        v = value(case)
        if v is None:
            _missing(ax, y, case)
            continue
        values.append(v)
        ax.barh(y, v, color=color(case), height=0.7, hatch="xx" if case.status == "failed" else None,
                edgecolor="black" if case.status == "failed" else None)
        ax.annotate(fmt.format(v) + unit, (max(v, (at(case) if at else None) or v), y), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize=8)
    return values


def _precision_legend(ax, cases: Sequence[CaseView], extra: Sequence = ()) -> None:
    seen = list(dict.fromkeys(case.precision for case in cases))
    handles = [Patch(color=COLORS.get(p, "#8c564b"), label=p) for p in seen] + list(extra)
    ax.legend(handles=handles, fontsize=8, loc="lower right")


def latency(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """p50 bars with whiskers to p90 (capped line) and a tick at p99; log axis for a wide range."""
    if not any(case.get("latency_ms", "p50") is not None for case in cases):
        return False
    fig, (ax,) = _figure(len(cases))
    values = _hbars(ax, cases, lambda c: c.get("latency_ms", "p50"), "{:.3g}", " ms",
                    at=lambda c: c.get("latency_ms", "p99"))
    p99s = []
    for y, case in enumerate(cases):
        p50, p90, p99 = (case.get("latency_ms", q) for q in ("p50", "p90", "p99"))
        if p50 is None:
            continue
        if p90 is not None:
            ax.errorbar(p50, y, xerr=[[0], [max(p90 - p50, 0)]], color="black", capsize=3, linewidth=1)
        if p99 is not None:
            ax.plot([p99], [y], marker="|", color="black", markersize=9)
            p99s.append(p99)
    log = _maybe_log(ax, values + p99s)
    _rows(ax, cases)
    ax.set_xlabel("latency per batch, ms" + (" (log scale)" if log else ""))
    whisker = [plt.Line2D([], [], color="black", marker="|", markersize=9, label="whisker: p90, tick: p99")]
    _precision_legend(ax, cases, whisker)
    return save_figure(fig, path, "Latency p50 per model x precision", footer)


def throughput_speedup(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Throughput (images/s), speed-up against FP32 on the same backend and device (what the
    precision gives), and speed-up against the PyTorch base on the same device, side by side."""
    if not any(case.get("throughput_ips") is not None for case in cases):
        return False
    fig, (left, middle, right) = _figure(len(cases), 3, width=18)
    values = _hbars(left, cases, lambda c: c.get("throughput_ips"), "{:.3g}", " img/s")
    log = _maybe_log(left, values)
    left.set_xlabel("throughput, images/s" + (" (log scale)" if log else ""))
    _rows(left, cases)
    for ax, value, label in ((middle, lambda c: c.speedup_fp32, "speed-up vs FP32, same backend and device"),
                             (right, lambda c: c.speedup, "speed-up vs PyTorch base, same device")):
        _hbars(ax, cases, value, "{:.2f}", "x")
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"{label} (p50 / p50), x")
        _rows(ax, cases)
    _precision_legend(right, cases)
    return save_figure(fig, path, "Throughput and speed-up", footer)


def drop_split(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """INT8 top-1 drop stacked in its two parts: quantization (fake-quant reference vs FP32) and
    kernels (the backend vs that reference); the parts add up to the drop."""
    split = [c for c in cases if c.get("accuracy_drop_quantization_pp") is not None
             and c.get("accuracy_drop_kernel_pp") is not None]
    if not split:
        return False
    fig, (ax,) = _figure(len(split))
    for y, case in enumerate(split):
        quantization, kernel = case.get("accuracy_drop_quantization_pp"), case.get("accuracy_drop_kernel_pp")
        ax.barh(y, quantization, color="#9ecae1", height=0.7)
        ax.barh(y, kernel, left=quantization, color="#de2d26" if kernel > 0 else "#31a354", height=0.7)
        ax.annotate(f"{quantization:+.2f} + {kernel:+.2f} = {quantization + kernel:+.2f} pp"
                    f"  ({case.record.get('int8_recipe')}, {case.record.get('cpu_isa')})",
                    (max(quantization, quantization + kernel, 0), y), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    _rows(ax, split)
    ax.set_xlabel("top-1 drop, pp: quantization (ranges, rounding) + kernels (backend vs fake-quant reference)")
    ax.legend(handles=[Patch(color="#9ecae1", label="quantization"), Patch(color="#de2d26", label="kernels (loss)"),
                       Patch(color="#31a354", label="kernels (gain)")], fontsize=8, loc="lower right")
    return save_figure(fig, path, "INT8 accuracy drop: quantization vs kernels", footer)


def _spread(rounds: Sequence[float], median: float) -> List[List[float]]:
    return [[max(median - min(rounds), 0)], [max(max(rounds) - median, 0)]]


def overhead(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """export_s + build_s stacked per case, error bars from min to max over the rounds."""
    cases = [c for c in cases if not c.is_base]
    if not any(c.get("export_s") is not None or c.get("build_s") is not None for c in cases):
        return False
    fig, (ax,) = _figure(len(cases))
    for y, case in enumerate(cases):
        export, build = case.get("export_s"), case.get("build_s")
        if export is None and build is None:
            _missing(ax, y, case)
            continue
        start = 0.0
        for name, value, hatch in (("export", export, None), ("build", build, "..")):
            if value is None:
                continue
            ax.barh(y, value, left=start, height=0.7, color=PHASE_COLORS[name], hatch=hatch, edgecolor="white")
            rounds = case.rounds(f"{name}_s")
            if len(rounds) > 1:
                ax.errorbar(start + value, y, xerr=_spread(rounds, value), color="black", capsize=3, linewidth=1)
            start += value
        end = start + max([r - (build or 0) for r in case.rounds("build_s")] + [0])
        ax.annotate(f"{start:.3g} s", (end, y), xytext=(8, 0), textcoords="offset points", va="center",
                    fontsize=8)
    _rows(ax, cases)
    ax.set_xlabel("compression time, s (phase 1: export, phase 2: build; median over rounds,"
                  " error bars: min-max over rounds)")
    ax.legend(handles=[Patch(color=PHASE_COLORS["export"], label="export (phase 1)"),
                       Patch(facecolor=PHASE_COLORS["build"], hatch="..", label="build (phase 2)")],
              fontsize=8, loc="lower right")
    return save_figure(fig, path, "Compression overhead per phase", footer)


def size(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Model size before (base) and after, with the reduction factor."""
    if not any(c.get("size_bytes") is not None for c in cases):
        return False
    largest = max(v for c in cases for v in (c.get("size_bytes"), c.get("size_bytes_base")) if v is not None)
    scale, unit = (MIB, "MiB") if largest >= MIB else (1024.0, "KiB")
    fig, (ax,) = _figure(len(cases))
    for y, case in enumerate(cases):
        after, before = case.get("size_bytes"), case.get("size_bytes_base")
        if after is None:
            _missing(ax, y, case)
            continue
        if before is not None:
            ax.barh(y - 0.18, before / scale, height=0.34, color="#c7c7c7")
        ax.barh(y + 0.18, after / scale, height=0.34, color=color(case))
        reduction = case.get("size_reduction")
        text = f"{after / scale:.3g} {unit}" + (f"  ({reduction:.2f}x smaller)" if reduction is not None else "")
        ax.annotate(text, (max(after, before or 0) / scale, y), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)
    _rows(ax, cases)
    ax.set_xlabel(f"model file size, {unit}")
    _precision_legend(ax, cases, [Patch(color="#c7c7c7", label="before (base model)")])
    return save_figure(fig, path, "Model size before and after compression", footer)


def accuracy(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Top-1 before (grey dot) and after (coloured dot), joined, with the drop in pp."""
    if not any(c.get("top1") is not None for c in cases):
        return False
    fig, (ax,) = _figure(len(cases))
    values = []
    for y, case in enumerate(cases):
        after, before = case.get("top1"), case.get("top1_base")
        if after is None:
            _missing(ax, y, case)
            continue
        points = [after * 100] + ([before * 100] if before is not None else [])
        values += points
        ax.plot(points, [y] * len(points), color="#999", linewidth=2, zorder=1)
        if before is not None:
            ax.scatter([before * 100], [y], color="#c7c7c7", edgecolor="black", s=45, zorder=2)
        ax.scatter([after * 100], [y], color=color(case), edgecolor="black", s=45, zorder=3,
                   marker="X" if case.status == "failed" else "o")
        drop = case.get("accuracy_drop_pp")
        ax.annotate(f"{after * 100:.2f}%" + (f"  (drop {drop:.2f} pp)" if drop is not None else ""),
                    (max(points), y), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
    low, high = min(values), max(values)
    pad = max(1.0, (high - low) * 0.15)
    ax.set_xlim(max(0.0, low - pad), min(100.0, high + pad) + (high - low + pad) * 0.6)
    _rows(ax, cases)
    ax.set_xlabel("top-1 accuracy, % (axis zoomed: it does not start at 0)")
    _precision_legend(ax, cases, [Patch(color="#c7c7c7", label="before (base model)")])
    return save_figure(fig, path, "Top-1 accuracy before and after compression", footer)


def tradeoff(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Accuracy drop (pp) against speed-up vs FP32 on the same backend and device (what the
    precision buys); marker area proportional to the model file size."""
    points = [c for c in cases if not c.is_base and c.speedup_fp32 is not None
              and c.get("accuracy_drop_pp") is not None and c.get("size_bytes") is not None]
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(11, 6.5))
    largest = max(c.get("size_bytes") for c in points)
    for case in points:
        area = 40 + 900 * case.get("size_bytes") / largest
        ax.scatter(case.speedup_fp32, case.get("accuracy_drop_pp"), s=area, color=color(case), alpha=0.6,
                   edgecolor="black", marker="X" if case.status == "failed" else "o")
        if abs(case.get("accuracy_drop_pp")) < 0.1 and case.status != "failed":
            continue  # crowded at 0 pp: the table names them
        ax.annotate(f"{case.label}\n{case.get('size_bytes') / MIB:.2g} MiB", (case.speedup_fp32,
                    case.get("accuracy_drop_pp")), xytext=(6, 6), textcoords="offset points", fontsize=7)
    log = _maybe_log(ax, [c.speedup_fp32 for c in points])
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("speed-up vs FP32 (same backend and device), x" + (" (log scale)" if log else ""))
    ax.set_ylabel("top-1 accuracy drop, pp (lower is better)")
    ax.grid(color="#ddd", linewidth=0.6)
    _precision_legend(ax, points)
    ax.legend(handles=[Patch(color=COLORS.get(p, "#8c564b"), label=p)
                       for p in dict.fromkeys(c.precision for c in points)], fontsize=8,
              title="marker area = model size", title_fontsize=8, loc="best")
    return save_figure(fig, path, "Trade-off: accuracy drop vs speed-up", footer)


#: Per-phase resource panels: (summary key, peak key or None, axis label, scale).
RESOURCE_PANELS = (
    ("cpu_percent_process_mean", "cpu_percent_process_peak", "process CPU, % (100 = one core; mean, whisker to peak)", 1.0),
    ("rss_bytes_peak", None, "peak RSS, MiB", MIB),
    ("gpu_load_percent_mean", "gpu_load_percent_peak", "GPU load, % (mean, whisker to peak)", 1.0),
    ("power_w_mean", None, "mean power, W", 1.0),
)


def resource_panels(cases: Sequence[CaseView]) -> List[Tuple[str, Optional[str], str, float]]:
    """The panels of :data:`RESOURCE_PANELS` that some phase of some case measured."""
    return [panel for panel in RESOURCE_PANELS
            if any(number(s.get(panel[0])) is not None for c in cases for s in c.resources().values())]


def resources(cases: Sequence[CaseView], path: Path, footer: str) -> bool:
    """Per case, one bar per phase for each measured quantity (CPU %, peak RSS, GPU %, power)."""
    panels = resource_panels(cases)
    if not panels:
        return False
    phases = [p for p in PHASES if any(p in c.resources() for c in cases)]
    fig, axes = _figure(len(cases), len(panels), width=5 * len(panels) + 3, row_height=0.16 * len(phases) + 0.2)
    height = 0.8 / max(len(phases), 1)
    for ax, (key, peak, label, scale) in zip(axes, panels):
        for y, case in enumerate(cases):
            found = case.resources()
            if not any(number(found.get(p, {}).get(key)) is not None for p in phases):
                _missing(ax, y, case)
                continue
            for i, phase in enumerate(phases):
                value = number(found.get(phase, {}).get(key))
                if value is None:
                    continue
                offset = y - 0.4 + height * (i + 0.5)
                ax.barh(offset, value / scale, height=height, color=PHASE_COLORS.get(phase, "#8c564b"))
                top = number(found[phase].get(peak)) if peak else None
                if top is not None and top > value:
                    ax.errorbar(value / scale, offset, xerr=[[0], [(top - value) / scale]], color="black",
                                linewidth=0.7, capsize=2)
        _rows(ax, cases)
        ax.set_xlabel(label)
    axes[-1].legend(handles=[Patch(color=PHASE_COLORS.get(p, "#8c564b"), label=p) for p in phases],
                    fontsize=8, loc="lower right")
    return save_figure(fig, path, "Resource use per phase", footer)


#: Raw-sample quantities drawn over time: (reading key, axis label, scale).
SAMPLE_SERIES = (
    ("cpu_percent_process", "process CPU, %", 1.0),
    ("rss_bytes", "RSS, MiB", MIB),
    ("gpu_load_percent", "GPU load, %", 1.0),
    ("power_w", "power, W", 1.0),
)


def _samples(summary) -> List[Tuple[float, Dict[str, float]]]:
    """(t_s, {reading: value}) per raw sample, readings of all sources merged."""
    out = []
    for sample in summary.get("samples") or []:
        t = number(sample.get("t_s")) if isinstance(sample, dict) else None
        if t is None or not isinstance(sample.get("readings"), dict):
            continue
        merged: Dict[str, float] = {}
        for readings in sample["readings"].values():
            if isinstance(readings, dict):
                merged.update({k: v for k, v in ((k, number(v)) for k, v in readings.items()) if v is not None})
        out.append((t, merged))
    return out


def has_samples(case: CaseView) -> bool:
    return any(_samples(summary) for summary in case.resources().values())


def over_time(case: CaseView, path: Path, footer: str) -> bool:
    """One case's raw telemetry samples, its phases laid end to end on one time axis."""
    phases = [(name, summary, _samples(summary)) for name, summary in case.resources().items()]
    phases = [entry for entry in phases if entry[2]]
    series = [s for s in SAMPLE_SERIES if any(s[0] in r for _, _, samples in phases for _, r in samples)]
    if not series:
        return False
    fig, axes = plt.subplots(len(series), 1, figsize=(12, 1.2 + 1.9 * len(series)), sharex=True, squeeze=False)
    axes = [row[0] for row in axes]
    offset = 0.0
    for name, summary, samples in phases:
        start = number(summary.get("start_s"))
        start = samples[0][0] if start is None else start
        duration = number(summary.get("duration_s")) or (samples[-1][0] - start)
        for ax, (key, label, scale) in zip(axes, series):
            points = [(offset + t - start, r[key] / scale) for t, r in samples if key in r]
            if points:
                ax.plot(*zip(*points), marker=".", color=PHASE_COLORS.get(name, "#8c564b"), linewidth=1.2)
            ax.axvspan(offset, offset + duration, color=PHASE_COLORS.get(name, "#8c564b"), alpha=0.08)
        axes[0].annotate(name, (offset + duration / 2, 1.0), xycoords=("data", "axes fraction"), ha="center",
                         va="bottom", fontsize=8)
        offset += duration
    for ax, (_, label, _) in zip(axes, series):
        ax.set_ylabel(label, fontsize=9)
        ax.grid(color="#ddd", linewidth=0.6)
    axes[-1].set_xlabel("time, s (phases laid end to end; each phase from its own start)")
    return save_figure(fig, path, f"Resource use over time: {case.label}", footer)


def side_by_side(rows: Sequence[Tuple[str, List[Optional[CaseView]]]], names: Sequence[str], path: Path,
                 footer: str) -> bool:
    """Latency p50 and top-1 per case, one bar per run; a run without the figure gets a hatched slot."""
    if not rows:
        return False
    fig, axes = _figure(len(rows), 2, width=14, row_height=0.22 * len(names) + 0.2)
    height = 0.8 / len(names)
    for ax, (title, value, fmt) in zip(axes, (("latency p50, ms", lambda c: c.get("latency_ms", "p50"), "{:.3g}"),
                                              ("top-1 accuracy, %", lambda c: _percent(c.get("top1")), "{:.2f}"))):
        values = []
        for y, (_, cases) in enumerate(rows):
            for i, case in enumerate(cases):
                offset = y - 0.4 + height * (i + 0.5)
                v = value(case) if case is not None else None
                if v is None:
                    text = case.status_text if case is not None else "not in this run"
                    ax.text(0.01, offset, f"{names[i]}: {text[:70]}", transform=blended_transform_factory(
                        ax.transAxes, ax.transData), va="center", fontsize=7, color="#444")
                    continue
                values.append(v)
                ax.barh(offset, v, height=height, color=RUN_COLORS[i % len(RUN_COLORS)],
                        hatch="xx" if case.status == "failed" else None)
                ax.annotate(fmt.format(v), (v, offset), xytext=(2, 0), textcoords="offset points", va="center",
                            fontsize=7)
        log = title.startswith("latency") and _maybe_log(ax, values)
        if title.startswith("top-1") and values:
            ax.set_xlim(max(0.0, min(values) - 5), 100.5)
            title += " (axis zoomed)"
        ax.set_xlabel(title + (" (log scale)" if log else ""))
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([label for label, _ in rows], fontsize=9)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.grid(axis="x", color="#ddd", linewidth=0.6)
    axes[-1].legend(handles=[Patch(color=RUN_COLORS[i % len(RUN_COLORS)], label=n) for i, n in enumerate(names)],
                    fontsize=8, loc="lower right")
    return save_figure(fig, path, "Runs side by side", footer)


def _percent(value: Optional[float]) -> Optional[float]:
    return None if value is None else value * 100.0

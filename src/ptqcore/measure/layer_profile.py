"""Per-layer time of one artifact, as the runtime's own profiler measured it: the table and its summary.

A :class:`LayerProfile` holds, for every layer the runtime ran (ONNX Runtime: a node of its optimized
graph; TensorRT: an engine layer), its per-call times over the profiled calls, and the sum of all
layers' times per call. Backends build it (:mod:`ptqcore.backends.ort_profile`,
:mod:`ptqcore.backends.tensorrt.profiler`); this module only reads it.

Each layer has a *category* (:data:`CATEGORIES`): ``compute`` (a kernel in the artifact's own
precision), ``float`` (a compute layer of a quantized artifact that runs in FP32 or FP16: a float
fallback), ``qdq`` (a QuantizeLinear / DequantizeLinear the runtime did not fuse away) and
``reformat`` (layout or type conversions the runtime added: ONNX Runtime's ``ReorderInput`` /
``ReorderOutput`` / inserted ``Transpose`` and ``Cast``, TensorRT's reformat layers).

:func:`summary` is what a record keeps (``layer_profile``): totals per category and per op type,
the top layers, and how far the profiled total is from the case's measured latency. A profile whose
layers add up to far more or far less than the latency is flagged, never hidden.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ptqcore.build.graph_layers import QUANTIZE_OPS

CATEGORIES = ("compute", "float", "qdq", "reformat")
#: Layers kept in a record's ``top`` list.
TOP_LAYERS = 10
#: The profiled total over the measured latency p50 outside this band is flagged. Below: the
#: runtime spends time outside its layers (session overhead, copies, threads waiting); above: the
#: profiler itself slowed the layers down.
AGREEMENT_BAND = (0.5, 1.25)
#: Columns of the full table written beside the run's JSON (:func:`write_table`).
TABLE_COLUMNS = ("layer", "op_type", "precision", "category", "group", "neighbour", "provider", "median_ms",
                 "share", "calls", "profiler_cost_ms")


@dataclass(frozen=True)
class LayerTime:
    """One runtime layer: its name, op type (or label), precision (``int8``, ``fp16``, ``fp32``,
    ``int32`` or ``unknown``), :data:`CATEGORIES` category, layer group (:mod:`ptqcore.build.graph_layers`;
    ``""`` when the runtime made the layer up), for a Q/DQ layer the float op it serves
    (``neighbour``), where it ran (``provider``) and its time per profiled call (ms), after the
    profiler's own cost ``cost_ms``."""

    layer: str
    op_type: str
    precision: str
    category: str
    group: str
    neighbour: str
    provider: str
    times_ms: Tuple[float, ...]
    #: the profiler's own cost taken off each call's reported time (:class:`ProfilerCost`; 0: none)
    cost_ms: float = 0.0

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.times_ms)) if self.times_ms else 0.0


@dataclass(frozen=True)
class ProfilerCost:
    """What the profiler itself adds to each layer's reported time, measured (not assumed): a layer
    with ``k`` inputs is charged ``per_layer_ms + k * per_input_ms`` (:meth:`of`), subtracted from its
    reported time (never below 0). ``how`` says how it was measured."""

    per_layer_ms: float
    per_input_ms: float
    how: str

    def of(self, inputs: int) -> float:
        return max(0.0, self.per_layer_ms + inputs * self.per_input_ms)

    def as_dict(self) -> dict:
        return {"per_layer_ms": self.per_layer_ms, "per_input_ms": self.per_input_ms, "how": self.how}


@dataclass(frozen=True)
class LayerProfile:
    """Every layer of one artifact over ``calls`` profiled calls; ``call_totals_ms``: per call, the
    sum of its layers' times (after the profiler's own cost, where it was measured: ``cost``, and
    ``raw_call_totals_ms`` as the runtime reported them); ``runtime``: who measured (``onnxruntime``
    or ``tensorrt``)."""

    layers: Tuple[LayerTime, ...]
    call_totals_ms: Tuple[float, ...]
    calls: int
    runtime: str
    notes: Tuple[str, ...] = field(default=())
    raw_call_totals_ms: Tuple[float, ...] = field(default=())
    cost: Optional[ProfilerCost] = None

    @property
    def raw_total_ms(self) -> float:
        """The median over calls of the layers' summed time as the runtime reported it (ms)."""
        totals = self.raw_call_totals_ms or self.call_totals_ms
        return float(statistics.median(totals)) if totals else 0.0

    @property
    def total_ms(self) -> float:
        """Every layer's median time, summed (ms): what the shares of categories, op types and layers
        are shares of, so they add up to 1."""
        return float(sum(layer.median_ms for layer in self.layers))

    @property
    def call_total_ms(self) -> float:
        """The median over calls of the layers' summed time (ms); below :attr:`total_ms` where layer
        times are skewed (the median of a sum is not the sum of the medians)."""
        return float(statistics.median(self.call_totals_ms)) if self.call_totals_ms else 0.0

    def by(self, key: str) -> Dict[str, Tuple[float, int]]:
        """``{value of LayerTime.<key>: (summed median ms, layers)}``, largest time first."""
        out: Dict[str, List[float]] = {}
        for layer in self.layers:
            item = out.setdefault(getattr(layer, key) or "(none)", [0.0, 0])
            item[0] += layer.median_ms
            item[1] += 1
        return {name: (ms, int(n)) for name, (ms, n) in sorted(out.items(), key=lambda kv: (-kv[1][0], kv[0]))}


def _shares(groups: Dict[str, Tuple[float, int]], total: float) -> Dict[str, dict]:
    return {name: {"ms": ms, "share": ms / total if total > 0 else None, "layers": n} for name, (ms, n) in groups.items()}


def agreement(profiled_ms: float, latency_ms: Optional[float]) -> Tuple[Optional[float], Optional[str]]:
    """(profiled / latency, the flag's text or None): see :data:`AGREEMENT_BAND`."""
    if not latency_ms or latency_ms <= 0:
        return None, "no measured latency to check the profile against"
    ratio = profiled_ms / latency_ms
    low, high = AGREEMENT_BAND
    if ratio < low:
        return ratio, (f"the layers add up to {100 * ratio:.0f}% of the measured latency p50: most of the time is"
                       " spent outside the runtime's layers (session overhead, copies, synchronisation)")
    if ratio > high:
        return ratio, (f"the layers add up to {100 * ratio:.0f}% of the measured latency p50: profiling slowed"
                       " the layers down, so their shares are more trustworthy than their times")
    return ratio, None


def summary(profile: LayerProfile, latency_p50_ms: Optional[float], table_file: Optional[str],
            top: int = TOP_LAYERS) -> dict:
    """The record's ``layer_profile``: ``file`` (the full table), ``runtime``, ``calls``, ``layers``,
    ``profiled_ms`` (the layers' median times summed, after the profiler's own cost: what every share
    is a share of), ``per_call_ms`` (the median of each call's summed layer times), ``raw_profiled_ms``
    (that median as the runtime reported it, before the cost), ``profiler_cost`` (:class:`ProfilerCost`, None where none was measured),
    ``latency_p50_ms``, ``vs_latency`` (profiled over latency),
    ``flag`` (None, or why the profile and the latency disagree), ``by_category`` and ``by_op_type``
    (``{name: {ms, share, layers}}``; shares of ``profiled_ms`` summed over per-layer medians),
    ``top`` (the ``top`` slowest layers) and ``notes``."""
    total = profile.total_ms
    ratio, flag = agreement(total, latency_p50_ms)
    ranked = sorted(profile.layers, key=lambda layer: -layer.median_ms)[:top]
    return {
        "file": table_file, "runtime": profile.runtime, "calls": profile.calls, "layers": len(profile.layers),
        "profiled_ms": total, "per_call_ms": profile.call_total_ms, "raw_profiled_ms": profile.raw_total_ms,
        "profiler_cost": profile.cost.as_dict() if profile.cost else None,
        "latency_p50_ms": latency_p50_ms, "vs_latency": ratio, "flag": flag,
        "by_category": _shares(profile.by("category"), total),
        "by_op_type": _shares(profile.by("op_type"), total),
        "top": [{"layer": layer.layer, "op_type": layer.op_type, "precision": layer.precision,
                 "category": layer.category, "group": layer.group, "ms": layer.median_ms,
                 "share": layer.median_ms / total if total > 0 else None} for layer in ranked],
        "notes": list(profile.notes),
    }


def write_table(profile: LayerProfile, path: Path) -> Path:
    """The full per-layer table as CSV (:data:`TABLE_COLUMNS`), slowest first, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = profile.total_ms
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TABLE_COLUMNS)
        for layer in sorted(profile.layers, key=lambda item: -item.median_ms):
            writer.writerow([layer.layer, layer.op_type, layer.precision, layer.category, layer.group,
                             layer.neighbour, layer.provider, f"{layer.median_ms:.6f}",
                             f"{layer.median_ms / total:.6f}" if total > 0 else "", len(layer.times_ms),
                             f"{layer.cost_ms:.6f}"])
    partial.replace(path)
    return path


def categorize(op_type: str, precision: str, quantized_artifact: bool, reformat: bool) -> str:
    """A layer's :data:`CATEGORIES` entry from what the runtime said about it."""
    if op_type in QUANTIZE_OPS or op_type in ("Quantize", "Dequantize"):  # the last two: TensorRT's layer types
        return "qdq"
    if reformat:
        return "reformat"
    if quantized_artifact and precision in ("fp32", "fp16", "bf16"):
        return "float"
    return "compute"


def per_call_totals(per_call: Sequence[Dict[str, float]]) -> Tuple[float, ...]:
    """The summed layer time of each call."""
    return tuple(float(sum(call.values())) for call in per_call)

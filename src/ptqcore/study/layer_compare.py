"""Where an INT8 artifact's time goes against its float twin, layer by layer, and why INT8 does not pay.

Both profiles (:class:`~ptqcore.measure.layer_profile.LayerProfile`) are summed per layer group
(:mod:`ptqcore.build.graph_layers`: a Conv with its BatchNormalization, activation and Q/DQ nodes is
one group, named after the Conv), so an FP32 Conv fused with its Relu and the INT8 QLinearConv that
replaced both meet under one name. The float twin is FP32 on a CPU and FP16 on a GPU
(:data:`REFERENCE_PRECISION`), what INT8 has to beat there.

:func:`layer_changes` is the record's ``layer_changes``: per group the twin's and INT8's time and
INT8's parts (compute, Q/DQ, reformat, float), the groups that changed most first, the rest summed
(the record adds ``speedup``, the twin's measured latency p50 over INT8's, and ``reference_precision``).
:func:`slowdown_causes` is ``int8_slowdown``: when INT8 is not faster than its twin, the measured
causes, largest first: Q/DQ nodes the runtime did not fuse (and the float ops they serve), layers
left in float, reformat layers, and INT8 kernels slower than the float kernels they replaced.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ptqcore.measure.layer_profile import CATEGORIES, LayerProfile

#: The precision an INT8 case must beat, by device kind.
REFERENCE_PRECISION = {"cpu": "fp32"}
DEFAULT_REFERENCE = "fp16"
#: Groups listed one by one in ``layer_changes``; the rest are summed into ``other``.
TOP_GROUPS = 15
#: A cause below this share of the INT8 time is not named.
MIN_CAUSE_SHARE = 0.02
#: What the runtime added (layers with no node in the ONNX file) is summed under this group name.
ADDED = "(added by the runtime)"


def reference_precision(device: str) -> str:
    return REFERENCE_PRECISION.get(device, DEFAULT_REFERENCE)


def _groups(profile: LayerProfile) -> Dict[str, Dict[str, float]]:
    """group -> {category: ms, "op": label of its slowest compute or float layer}."""
    out: Dict[str, Dict] = {}
    slowest: Dict[str, float] = {}
    for layer in profile.layers:
        name = layer.group or ADDED
        item = out.setdefault(name, {category: 0.0 for category in CATEGORIES})
        item[layer.category] += layer.median_ms
        if layer.category in ("compute", "float") and layer.median_ms >= slowest.get(name, -1.0):
            slowest[name] = layer.median_ms
            item["op"] = layer.op_type
    return out


def _total(parts: Optional[Dict]) -> float:
    return sum(parts.get(category, 0.0) for category in CATEGORIES) if parts else 0.0


def layer_changes(reference: LayerProfile, quantized: LayerProfile, reference_case: str,
                  top: int = TOP_GROUPS) -> dict:
    """``{reference, groups, matched, only_reference, only_quantized, reference_ms, ms, rows, other}``;
    each row ``{group, op, reference_op, reference_ms, ms, delta_ms, ratio, parts}``, by the size
    of the change (``|delta_ms|``), largest first."""
    ref, mine = _groups(reference), _groups(quantized)
    rows = []
    for name in sorted(set(ref) | set(mine)):
        before, after = _total(ref.get(name)), _total(mine.get(name))
        rows.append({"group": name, "op": (mine.get(name) or {}).get("op"), "reference_op": (ref.get(name) or {}).get("op"),
                     "reference_ms": before if name in ref else None, "ms": after if name in mine else None,
                     "delta_ms": after - before, "ratio": after / before if before > 0 and name in mine else None,
                     "parts": {category: (mine.get(name) or {}).get(category, 0.0) for category in CATEGORIES}})
    rows.sort(key=lambda row: (-abs(row["delta_ms"]), row["group"]))
    rest = rows[top:]
    named = set(ref) - {ADDED}, set(mine) - {ADDED}
    return {
        "reference": reference_case, "groups": len(rows), "matched": len(named[0] & named[1]),
        "only_reference": len(named[0] - named[1]), "only_quantized": len(named[1] - named[0]),
        "reference_ms": sum(map(_total, ref.values())), "ms": sum(map(_total, mine.values())),
        "rows": rows[:top],
        "other": {"groups": len(rest), "reference_ms": sum(row["reference_ms"] or 0.0 for row in rest),
                  "ms": sum(row["ms"] or 0.0 for row in rest), "delta_ms": sum(row["delta_ms"] for row in rest)},
    }


def _layers(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


def _most(counts: Dict[str, Tuple[float, int]], limit: int = 3) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
    return ", ".join(f"{name} ({n})" for name, (_, n) in ranked)


def _tally(items) -> Dict[str, Tuple[float, int]]:
    out: Dict[str, List[float]] = {}
    for name, ms in items:
        entry = out.setdefault(name or "unknown", [0.0, 0])
        entry[0] += ms
        entry[1] += 1
    return {name: (ms, int(n)) for name, (ms, n) in out.items()}


def slowdown_causes(reference: LayerProfile, quantized: LayerProfile, speedup: Optional[float],
                    reference_name: str, quantized_name: str = "INT8") -> Optional[dict]:
    """None when ``speedup`` (twin p50 / INT8 p50) is above 1 or unknown; else ``{speedup, ms,
    reference_ms, causes}``, each cause ``{cause, ms, share, layers, text}`` (``share``: of the INT8
    profile's total), largest first, those under :data:`MIN_CAUSE_SHARE` left out."""
    if speedup is None or speedup > 1.0:
        return None
    total = quantized.total_ms
    if total <= 0:
        return None
    causes = []

    def add(cause: str, ms: float, layers: int, text: str) -> None:
        if ms > 0 and ms / total >= MIN_CAUSE_SHARE:
            causes.append({"cause": cause, "ms": ms, "share": ms / total, "layers": layers,
                           "text": f"{100 * ms / total:.0f}% of {quantized_name} time ({ms:.3f} ms) {text}"})

    by = {category: [layer for layer in quantized.layers if layer.category == category] for category in CATEGORIES}
    qdq = by["qdq"]
    add("qdq", sum(layer.median_ms for layer in qdq), len(qdq),
        f"is in {_layers(len(qdq))} of QuantizeLinear/DequantizeLinear the runtime did not fuse, around "
        + _most(_tally((layer.neighbour, layer.median_ms) for layer in qdq)))
    floats = by["float"]
    add("float", sum(layer.median_ms for layer in floats), len(floats),
        f"is in {_layers(len(floats))} left in float: " + _most(_tally((layer.op_type, layer.median_ms) for layer in floats)))
    reformats = by["reformat"]
    add("reformat", sum(layer.median_ms for layer in reformats), len(reformats),
        f"is in {_layers(len(reformats))} of reformatting: " + _most(_tally((layer.op_type, layer.median_ms) for layer in reformats)))
    ref, mine = _groups(reference), _groups(quantized)
    slower = [(name, mine[name]["compute"] - _total(ref[name]), mine[name].get("op"))
              for name in set(ref) & set(mine) if name != ADDED and mine[name]["compute"] > _total(ref[name])]
    extra = sum(delta for _, delta, _ in slower)
    matched = len((set(ref) & set(mine)) - {ADDED})
    add("slower_kernels", extra, len(slower),
        f"is added by {quantized_name} kernels slower than the {reference_name} layers they replace, on {len(slower)} of"
        f" {matched} matched layers: " + _most(_tally((op, delta) for _, delta, op in slower)))
    causes.sort(key=lambda cause: -cause["ms"])
    return {"speedup": speedup, "ms": total, "reference_ms": reference.total_ms, "reference": reference_name,
            "causes": causes}

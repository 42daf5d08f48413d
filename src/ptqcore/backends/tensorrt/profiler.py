"""TensorRT's per-layer profiler, read into a :class:`~ptqcore.measure.layer_profile.LayerProfile`.

``IExecutionContext.profiler`` takes an ``IProfiler`` subclass whose ``report_layer_time(layer_name,
ms)`` TensorRT calls once per engine layer for each ``execute_v2`` / ``execute_async_v2`` /
``execute_async_v3`` (``NvInferRuntime.h`` and ``pyCore.cpp``, 8.5 to 11.x; the Python subclass must
call ``IProfiler.__init__``). Layer names are the engine inspector's ``Name``s: fused layers join the
ONNX node names they cover (``A + B``, ``PWN(A, B)``), and detailed engines list them in
``Metadata`` as ``[ONNX Layer: name]``. A profiled engine runs without CUDA graphs (a replayed graph
reports nothing), so profiling happens apart from the timed latency rounds.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from ptqcore.backends.tensorrt.census import inspector_layer_list, layer_facts
from ptqcore.build.graph_layers import FOLLOWER_OPS, QUANTIZE_OPS, GraphLayers
from ptqcore.measure.layer_profile import LayerProfile, LayerTime, categorize, per_call_totals

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
#: A fused layer name's parts: ``A + B``, ``PWN(PWN(A), B)``; TensorRT's own wrapper words are not node names.
_NAME_TOKEN = re.compile(r"[^\s+(),]+")
_WRAPPERS = ("PWN",)
_REFORMAT_PREFIX = "Reformatting CopyNode for "
_PRECISIONS = {"Int8": "int8", "UInt8": "int8", "Half": "fp16", "Float": "fp32", "BFloat16": "bf16", "FP8": "fp8",
               "Int32": "int32"}
_QDQ_LAYER_TYPES = ("Quantize", "Dequantize", "QuantizeLinear", "DequantizeLinear")


def layer_collector(trt):
    """A new ``trt.IProfiler`` whose ``reports`` list gets ``(layer name, ms)`` of every report."""

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.reports: List[Tuple[str, float]] = []

        def report_layer_time(self, layer_name, ms) -> None:
            self.reports.append((str(layer_name), float(ms)))

        def take(self) -> List[Tuple[str, float]]:
            taken, self.reports = self.reports, []
            return taken

    return LayerTimes()


def inspector_layers(text: str) -> Dict[str, dict]:
    """Layer name -> its inspector entry (a dict; ``{"Name": name}`` for a names-only engine), from
    :func:`~ptqcore.backends.tensorrt.census.inspector_layer_list`; empty for text without layers."""
    try:
        layers = inspector_layer_list(text)
    except ValueError:
        return {}
    out = {}
    for layer in layers:
        entry = layer if isinstance(layer, dict) else {"Name": str(layer)}
        out[str(entry.get("Name", ""))] = entry
    return out


def onnx_names(name: str, entry: dict) -> List[str]:
    """The ONNX node names a TensorRT layer covers: from ``Metadata`` where the engine has it, else
    from the fused name itself."""
    found = _ONNX_LAYER.findall(str(entry.get("Metadata") or ""))
    if found:
        return [item.strip() for item in found]
    if name.startswith(_REFORMAT_PREFIX) and " to " in name:  # a copy into a layer: that layer's names
        name = name.split(" to ", 1)[1]
    return [token for token in _NAME_TOKEN.findall(name) if token not in _WRAPPERS]


def _group(names: Sequence[str], graph: Optional[GraphLayers]) -> str:
    """The layer group of a fused layer: that of the first covered node that does work (not a follower
    or Q/DQ node); without a graph, the first such name by its last path part."""
    if graph is not None:
        nodes = [node for node in map(graph.node_for, names) if node is not None]
        working = [node for node in nodes if node.op_type not in FOLLOWER_OPS and node.op_type not in QUANTIZE_OPS]
        chosen = (working or nodes or [None])[0]
        return chosen.group if chosen is not None else ""
    for name in names:
        op = re.sub(r"_\d+$", "", name.rsplit("/", 1)[-1])
        if "::" not in name and op not in FOLLOWER_OPS and not any(op.endswith(q) for q in QUANTIZE_OPS):
            return name  # "onnx::Conv_43" is a weight's name, not a node's
    return names[0] if names else ""


def profile_from_reports(per_call: Sequence[Sequence[Tuple[str, float]]], layers: Dict[str, dict],
                         graph: Optional[GraphLayers], quantized: bool) -> LayerProfile:
    """The profile of ``per_call`` (each call's ``(layer, ms)`` reports) with the inspector's
    ``layers`` (:func:`inspector_layers`) and the ONNX graph the engine came from (optional)."""
    times: Dict[str, List[float]] = {}
    calls: List[Dict[str, float]] = []
    for reports in per_call:
        call: Dict[str, float] = {}
        for name, ms in reports:
            call[name] = call.get(name, 0.0) + ms
            times.setdefault(name, [])
        calls.append(call)
    out = []
    for name in times:
        entry = layers.get(name, {"Name": name})
        kind, precision, reformat, _ = layer_facts(entry if len(entry) > 1 else name)
        op = kind or ("Reformat" if reformat else "unknown")
        precision_name = _PRECISIONS.get(precision, "unknown")
        if op in _QDQ_LAYER_TYPES:
            op = "QuantizeLinear" if op.startswith("Quantize") else "DequantizeLinear"
        out.append(LayerTime(
            layer=name, op_type=op, precision=precision_name,
            category=categorize(op, precision_name, quantized, reformat),
            group=_group(onnx_names(name, entry), graph), neighbour="", provider="TensorRT",
            times_ms=tuple(call.get(name, 0.0) for call in calls),
        ))
    notes = () if any(len(entry) > 1 for entry in layers.values()) else (
        "the engine was built without detailed profiling verbosity: layer types and precisions are unknown",)
    return LayerProfile(tuple(out), per_call_totals(calls), len(calls), "tensorrt", notes)

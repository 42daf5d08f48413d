"""ONNX Runtime's own per-node profiler, read into a :class:`~ptqcore.measure.layer_profile.LayerProfile`.

With ``SessionOptions.enable_profiling`` a session writes, on ``end_profiling()``, a Chrome-trace
JSON list of events (``onnxruntime/core/common/profiler.cc``, 1.19 to 1.32): per run a ``Session``
event ``model_run`` with its start ``ts`` and ``dur`` (microseconds), and per executed node a
``Node`` event named ``<node name>_kernel_time`` with ``args.op_name``, ``args.provider`` and
``args.input_type_shape`` (a list of ``{type: shape}``, e.g. ``[{"uint8": [1, 16, 8, 8]}, ...]``).
Node names are those of the optimized graph: ONNX Runtime keeps the names of the nodes it fuses into
(``QLinearConv`` is named after the Conv it replaces), renames what it rewrites, and adds nodes of
its own (:mod:`ptqcore.build.graph_layers` maps them back).

Profiling runs in its own session, never the timed one: the timed latency rounds are not touched.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ptqcore.build.graph_layers import GraphLayers
from ptqcore.errors import BuildError
from ptqcore.measure.layer_profile import LayerProfile, LayerTime, ProfilerCost, categorize, per_call_totals

#: ONNX Runtime's layout and type conversions: reformat layers wherever they appear.
REFORMAT_OPS = ("ReorderInput", "ReorderOutput", "Cast")
#: Ops that are reformat layers when ONNX Runtime added them (no twin in the ONNX file): the NHWC
#: transformer's Transposes around quantized convolutions.
ADDED_REFORMAT_OPS = ("Transpose",)
_PRECISIONS = {"uint8": "int8", "int8": "int8", "float": "fp32", "float16": "fp16", "bfloat16": "bf16",
               "int32": "int32"}
_KERNEL_SUFFIX = "_kernel_time"


def _precision(args: dict) -> str:
    """The precision a node computes in, from its inputs' types: ``int8`` if it reads 8-bit data (a
    ``QLinearConcat``'s first inputs are its float scales), else ``fp16`` / ``fp32`` if it reads
    floats, else the first input's type."""
    found = [_PRECISIONS.get(next(iter(item)), "unknown") for item in args.get("input_type_shape") or []
             if isinstance(item, dict) and item]
    for precision in ("int8", "fp16", "bf16", "fp32"):
        if precision in found:
            return precision
    return found[0] if found else "unknown"


#: ONNX Runtime's fused quantized ops -> the op they replace, and the input index of their weight.
QUANTIZED_OPS = {"QLinearConv": ("Conv", 3), "QGemm": ("Gemm", 3), "QLinearMatMul": ("MatMul", 3),
                 "QLinearAdd": ("Add", None), "QLinearMul": ("Mul", None), "QLinearConcat": ("Concat", None),
                 "QLinearGlobalAveragePool": ("GlobalAveragePool", None), "QLinearAveragePool": ("AveragePool", None),
                 "QLinearSigmoid": ("Sigmoid", None), "QLinearLeakyRelu": ("LeakyRelu", None)}


def _label(op: str, node, graph: GraphLayers) -> str:
    """What the report calls a runtime node: the label of the ONNX node it is (a fused node named after
    its last node's output is labelled by its group's head: ``r1_nchwc`` is the Conv before Relu
    ``r1``), ``QLinear`` + the Conv's label for a quantized Conv (``QLinearConv (depthwise)``), the
    node's label and the runtime's op for a node rewritten into another (``BatchNormalization (as
    Conv)``), else the runtime's op type."""
    head = graph.nodes.get(node.group) if node is not None else None
    for candidate in (node, head):
        if candidate is not None and candidate.op_type == op:
            return candidate.label
    if head is not None and op in QUANTIZED_OPS and head.op_type == QUANTIZED_OPS[op][0]:
        return "QLinear" + head.label if op == "QLinearConv" else op  # QLinearConv (depthwise), QGemm
    if node is not None:  # rewritten into another op: a BatchNormalization run as a depthwise Conv
        return f"{node.label} (as {op})"
    return op


def _weight_shape(args: dict) -> Optional[tuple]:
    index = (QUANTIZED_OPS.get(str(args.get("op_name", ""))) or (None, None))[1]
    shapes = args.get("input_type_shape") or []
    if index is None or index >= len(shapes) or not isinstance(shapes[index], dict) or not shapes[index]:
        return None
    return tuple(int(d) for d in next(iter(shapes[index].values())))


def _same_weight(runtime: Optional[tuple], onnx_shape: Optional[tuple]) -> bool:
    """Whether a runtime node's weight input fits an ONNX node's weight: equal shapes, or where ONNX
    Runtime pre-packed the weight away (1.19 lists the per-channel scales in its place) the same
    output channel count; unknown on either side fits."""
    if not runtime or not onnx_shape:
        return True
    if len(runtime) == len(onnx_shape):
        return runtime == onnx_shape
    return runtime[0] == onnx_shape[0]


def _matched_nodes(facts: Dict[str, tuple], weights: Dict[str, Optional[tuple]],
                   graph: GraphLayers) -> Tuple[dict, int]:
    """Runtime node name -> its ONNX node: by name (:meth:`GraphLayers.node_for`), and for a fused
    quantized node that ONNX Runtime named after its op (1.19 names them ``QLinearConv``,
    ``QLinearConv_token_4``; 1.32 after the Conv they replace) the first ONNX node, in graph order, of
    the op it replaces with the same weight shape that no runtime node claimed by name; and how many
    were matched that way."""
    out = {name: graph.node_for(name) for name in facts}
    claimed = {node.name for node in out.values() if node is not None}
    by_signature = 0
    for name, (op, _, _, _) in facts.items():
        if out[name] is not None or op not in QUANTIZED_OPS:
            continue
        replaced = QUANTIZED_OPS[op][0]
        for candidate in graph.nodes.values():
            if (candidate.op_type == replaced and candidate.name not in claimed
                    and _same_weight(weights.get(name), graph.weight_shape(candidate.name))):
                out[name] = candidate
                claimed.add(candidate.name)
                by_signature += 1
                break
    return {name: node for name, node in out.items() if node is not None}, by_signature


def profile_from_events(events: Sequence[dict], graph: GraphLayers, quantized: bool, skip_runs: int,
                        cost: Optional[ProfilerCost] = None) -> LayerProfile:
    """The profile of the runs after the first ``skip_runs`` (warm-up) of ONNX Runtime's ``events``.

    Node events are assigned to the ``model_run`` whose time span holds their start; ``cost`` (the
    profiler's own cost per node, :func:`profiler_cost`) is taken off each node's time. Raises
    :class:`~ptqcore.errors.BuildError` when the trace has no run after the warm-up, or no node times
    (a build of ONNX Runtime without its profiler)."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")[skip_runs:]
    if not runs:
        raise BuildError("ONNX Runtime's profile holds no run after the warm-up",
                         "profile with more calls (the profile must see at least one run)")
    nodes = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(_KERNEL_SUFFIX)),
                   key=lambda e: e["ts"])
    per_call: List[Dict[str, float]] = [{} for _ in runs]
    raw: List[float] = [0.0 for _ in runs]
    facts: Dict[str, Tuple[str, str, str, float]] = {}
    weights: Dict[str, Optional[tuple]] = {}
    run = 0
    for event in nodes:
        while run < len(runs) and event["ts"] >= runs[run][1]:
            run += 1
        if run == len(runs):
            break
        if event["ts"] < runs[run][0]:
            continue  # a warm-up run's node
        name = event["name"][: -len(_KERNEL_SUFFIX)]
        args = event.get("args") or {}
        reported = event["dur"] / 1e3
        own = cost.of(len(args.get("input_type_shape") or [])) if cost is not None else 0.0
        per_call[run][name] = per_call[run].get(name, 0.0) + max(0.0, reported - own)
        raw[run] += reported
        facts.setdefault(name, (str(args.get("op_name", "")), str(args.get("provider", "")), _precision(args), own))
        weights.setdefault(name, _weight_shape(args))
    if not facts:
        raise BuildError("ONNX Runtime's profile holds no node times",
                         "use an onnxruntime build with its profiler (the PyPI wheels have it)")
    nodes, by_signature = _matched_nodes(facts, weights, graph)
    layers = []
    for name, (op, provider, precision, own) in facts.items():
        node = nodes.get(name)
        reformat = op in REFORMAT_OPS or (node is None and op in ADDED_REFORMAT_OPS)
        layers.append(LayerTime(
            layer=name, op_type=_label(op, node, graph), precision=precision,
            category=categorize(op, precision, quantized, reformat),
            group=node.group if node is not None else "", neighbour=graph.neighbour_label(node) if node else "",
            provider=provider, times_ms=tuple(call.get(name, 0.0) for call in per_call), cost_ms=own,
        ))
    notes = []
    if by_signature:
        notes.append(f"{by_signature} fused node(s) ONNX Runtime named after their op were matched to ONNX nodes by op"
                     " type and weight shape, in graph order")
    if not all(layer.group for layer in layers):
        notes.append(f"{sum(not layer.group for layer in layers)} layer(s) ONNX Runtime added have no node in the ONNX file")
    return LayerProfile(tuple(layers), per_call_totals(per_call), len(runs), "onnxruntime", tuple(notes), tuple(raw),
                        cost)


#: Cost chains: this many Sum nodes of 1 element, each reading its input this many times.
COST_NODES = 200
COST_INPUTS = (1, 3, 9)
COST_REPEATS = 3
_COSTS: Dict[tuple, ProfilerCost] = {}


def _chain(inputs: int):
    from onnx import TensorProto, helper

    nodes, previous = [], "x"
    for index in range(COST_NODES):
        nodes.append(helper.make_node("Sum", [previous] * inputs, [f"t{index}"], name=f"n{index}"))
        previous = f"t{index}"
    graph = helper.make_graph(nodes, "cost", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _chain_cost(ort, make_options, providers, scratch: Path, inputs: int, repeat: int) -> float:
    """One measurement of the profiler's cost per node (ms) on a chain of ``inputs``-input nodes: the
    mean reported node time less the per-node wall time of the same chain without the profiler."""
    import onnx

    path = scratch / f"chain{inputs}.onnx"
    if not path.exists():
        onnx.save(_chain(inputs), str(path))
    feed = {"x": np.ones(1, np.float32)}
    options = make_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    plain = ort.InferenceSession(str(path), options, providers=list(providers))
    for _ in range(10):
        plain.run(None, feed)
    walls = []
    for _ in range(30):
        started = time.perf_counter()
        plain.run(None, feed)
        walls.append(time.perf_counter() - started)
    wall_ms = statistics.median(walls) / COST_NODES * 1e3
    options.enable_profiling = True
    options.profile_file_prefix = str(scratch / f"cost{inputs}-{repeat}")
    profiled = ort.InferenceSession(str(path), options, providers=list(providers))
    for _ in range(15):
        profiled.run(None, feed)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    durations = [e["dur"] / 1e3 for e in events if e.get("cat") == "Node" and e["ts"] >= runs[5]
                 and str(e.get("name", "")).endswith(_KERNEL_SUFFIX)]
    return max(0.0, statistics.fmean(durations) - wall_ms)


def profiler_cost(make_options: Callable[[], object], providers: Sequence[str]) -> ProfilerCost:
    """What ONNX Runtime's profiler adds to each node's reported time, with these session settings.

    ONNX Runtime takes a node's start time, then formats its input shapes, and formats its output
    shapes and thread-pool statistics before it takes the end time (``KernelScopeImpl`` in
    ``onnxruntime/core/framework/sequential_executor.cc``, 1.19 to 1.32): a few microseconds per node
    that a model of a thousand small nodes reports as its own time. Measured here on chains of
    :data:`COST_NODES` one-element ``Sum`` nodes with each of :data:`COST_INPUTS` inputs, the least of
    :data:`COST_REPEATS` interleaved repeats (:func:`_chain_cost`; a lower bound of the cost: the
    wall time it is measured against holds the executor's own work too), then a least-squares slope
    over the input counts (never below 0) through the lowest point. Measured once per process and settings."""
    import onnxruntime as ort

    probe = make_options()
    key = (probe.intra_op_num_threads, tuple(providers), ort.__version__)
    if key in _COSTS:
        return _COSTS[key]
    found: Dict[int, List[float]] = {inputs: [] for inputs in COST_INPUTS}
    with tempfile.TemporaryDirectory(prefix="ptqcore-ort-cost-") as scratch:
        for repeat in range(COST_REPEATS + 1):  # interleaved; the first pass only warms up
            for inputs in COST_INPUTS:
                cost_ms = _chain_cost(ort, make_options, providers, Path(scratch), inputs, repeat)
                if repeat:
                    found[inputs].append(cost_ms)
    points = [(inputs, min(costs)) for inputs, costs in found.items()]  # a lower bound: the least seen
    mean_k = statistics.fmean(k for k, _ in points)
    mean_c = statistics.fmean(c for _, c in points)
    slope = max(0.0, sum((k - mean_k) * (c - mean_c) for k, c in points) / sum((k - mean_k) ** 2 for k, _ in points))
    cost = ProfilerCost(max(0.0, min(c - slope * k for k, c in points)), slope,
                        f"ONNX Runtime {ort.__version__}, {probe.intra_op_num_threads} threads: chains of {COST_NODES}"
                        " one-element Sum nodes with " + "/".join(str(k) for k in COST_INPUTS) + " inputs, the least of"
                        f" {COST_REPEATS} interleaved repeats each: "
                        + ", ".join(f"{1e3 * c:.2f} us at {k}" for k, c in points))
    _COSTS[key] = cost
    return cost


def profile_session(model_path: Path, make_options: Callable[[], object], providers: Sequence[str], feed: dict,
                    calls: int, warmup: int, quantized: bool) -> LayerProfile:
    """Run ``feed`` through a new profiling session of ``model_path`` (``make_options()``: the timed
    session's ``SessionOptions``) ``warmup + calls`` times and read its trace, the profiler's own
    cost (:func:`profiler_cost`) taken off each node."""
    import onnxruntime as ort

    cost = profiler_cost(make_options, providers)
    options = make_options()
    with tempfile.TemporaryDirectory(prefix="ptqcore-ort-profile-") as scratch:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(model_path), options, providers=list(providers))
        outputs = [session.get_outputs()[0].name]
        for _ in range(warmup + calls):
            session.run(outputs, feed)
        trace = session.end_profiling()
        events = json.loads(Path(trace).read_text())
    return profile_from_events(events, GraphLayers.from_onnx(model_path), quantized, warmup, cost)

"""Per-layer sensitivity of an INT8 case: which quantized nodes add the error, ranked.

**What is compared.** The float model (``prepared.onnx``, what was quantized) and the case's Q/DQ
file (its fake-quant reference, :mod:`ptqcore.int8_reference`) both run on the first
:data:`SENSITIVITY_IMAGES` evaluation images with every graph optimization off, so each tensor
keeps its name and every Q/DQ pair executes as written. For each tensor present in both, the
noise-to-signal ratio ``NSR = sum((q - f)^2) / sum(f^2)`` over all those images (``f``: float,
``q``: Q/DQ model; ``SQNR = -10 log10 NSR`` dB, as in ``onnxruntime.quantization.qdq_loss_debug``)
is accumulated batch by batch, so no activation is kept in memory.

**The figure per node** (``added_nsr``): NSR of the node's float output (before its own output
pair) minus the largest NSR of the unrounded tensors its Q/DQ inputs were made from. The output
already carries every error from upstream; subtracting what came in leaves what *this* node's
quantization adds: the rounding of its input activations and of its weights. Noise from
independent sources adds in power, hence a difference of NSRs rather than of SQNR in dB (which is
undefined where the input is exact, at the first layer). That is exactly what keeping the node in
float removes (:func:`ptqcore.float_layers.keep_in_float`: float weights, unrounded inputs), so the
ranking is the order in which :mod:`ptqcore.mixed` excludes nodes. An activation with a few huge
outliers shows at its consumers: its range is wide, so the rounding of its typical values is
coarse. A node that amplifies noise it received (rather than adding its own) also ranks high, and
one that squashes it (a saturating Sigmoid) gets a negative figure; the greedy search's
verification on the evaluation split is what guards against a poor choice. Tensors are matched by
the node that makes them (:func:`float_names`), since the quantizer renames some.

**Why not the top-1 effect per layer.** Quantizing each layer alone (or leaving each alone in
float) and measuring top-1 costs one quantization and one accuracy pass per layer: 100 to 300 per
study model. This measure costs one pass of a few batches through two models, and top-1 is then
measured only for the few exclusion sets the search tries.

**Images.** Evaluation images, as the suite's accuracy pass (never calibration images, on which
min/max ranges see no clipping at all); only the first :data:`SENSITIVITY_IMAGES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .case import Case, Precision

if TYPE_CHECKING:  # pragma: no cover
    from .suite import Suite

#: Evaluation images the activations are compared on.
SENSITIVITY_IMAGES = 64
#: Layers a failure message and the report name (the record keeps every ranked node).
TOP_LAYERS = 10
#: Bumped when the measure changes, so cached rankings are recomputed.
SENSITIVITY_VERSION = 1
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _with_outputs(model, names: Sequence[str]) -> bytes:
    """The model with ``names`` added as graph outputs (type left to the runtime), serialized."""
    import onnx

    present = {out.name for out in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in present)
    return model.SerializeToString()


def tensor_nsr(float_path: Path, qdq_path: Path, pairs: Mapping[str, str], batches: Iterable[np.ndarray],
               threads: int = 0) -> Dict[str, float]:
    """NSR of every Q/DQ-model tensor in ``pairs`` (Q/DQ name -> the float model's name of the same
    value) over ``batches`` of images, accumulated as sums of squares per batch. A tensor whose
    float values are all 0 gets NSR 0 when the Q/DQ values are 0 too, else infinity."""
    import onnx

    names = sorted(pairs)
    float_names = [pairs[name] for name in names]
    float_session = _session(_with_outputs(onnx.load(str(float_path)), float_names), threads)
    qdq_session = _session(_with_outputs(onnx.load(str(qdq_path)), names), threads)
    input_name = float_session.get_inputs()[0].name
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for batch in batches:
        feed = {input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        f_values = float_session.run(float_names, feed)
        q_values = qdq_session.run(names, feed)
        for name, f, q in zip(names, f_values, q_values):
            f = np.asarray(f, dtype=np.float64)
            signal[name] += float(np.sum(f * f))
            noise[name] += float(np.sum((np.asarray(q, dtype=np.float64) - f) ** 2))
    return {name: (noise[name] / signal[name] if signal[name] > 0 else (0.0 if noise[name] == 0 else math.inf))
            for name in names}


def quantized_nodes(qdq_model) -> List[Tuple[object, List[str], str]]:
    """``(node, unrounded activation inputs, output)`` of every named node of a Q/DQ model that
    reads at least one DequantizeLinear output: the nodes ``nodes_to_exclude`` can name. An
    activation input is the tensor the Q/DQ pair was made from; weights (pairs made from
    initializers) are not activations. Names are the Q/DQ model's (:func:`float_names` maps them)."""
    initializers = {init.name for init in qdq_model.graph.initializer}
    producer = {out: node for node in qdq_model.graph.node for out in node.output}
    out = []
    for node in qdq_model.graph.node:
        if node.op_type in _QDQ or not node.name or not node.output:
            continue
        sources, quantized = [], False
        for name in node.input:
            dq = producer.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                quantized = True
                q = producer.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in initializers:
                    sources.append(q.input[0])
            elif name and name not in initializers:
                sources.append(name)
        if quantized:
            out.append((node, sources, node.output[0]))
    return out


def float_names(qdq_model, float_model) -> Dict[str, str]:
    """Q/DQ-model tensor -> the float model's tensor holding the same value, for every tensor of the
    Q/DQ model that has one. A node's outputs map to the outputs of the float node of the same name:
    ONNX Runtime's quantizer renames some (a Conv whose Relu it removes writes the Relu's output
    name, still before the Relu, whose clipping the Q/DQ pair's range then does; a quantized graph
    output ``X`` becomes ``X_QuantizeLinear_Input``). Other tensors keep their names."""
    float_nodes = {node.name: node for node in float_model.graph.node if node.name}
    known = ({out for node in float_model.graph.node for out in node.output}
             | {inp.name for inp in float_model.graph.input})
    out: Dict[str, str] = {}
    for node in qdq_model.graph.node:
        twin = float_nodes.get(node.name) if node.op_type not in _QDQ else None
        for index, name in enumerate(node.output):
            if twin is not None and index < len(twin.output) and twin.op_type == node.op_type:
                out[name] = twin.output[index]
            elif name in known:
                out[name] = name
    return out


def rank(nodes: Sequence[Tuple[object, List[str], str]], nsr: Mapping[str, float],
         macs: Mapping[str, int]) -> List[dict]:
    """One entry per node whose output NSR is known, by ``added_nsr`` (largest first; ties by name):
    ``node``, ``op``, ``added_nsr``, ``sqnr_in_db``, ``sqnr_out_db`` (None where exact) and
    ``macs``. An input without a figure (a graph input) is exact: NSR 0."""
    ranked = []
    for node, sources, output in nodes:
        if output not in nsr:
            continue
        nsr_in = max((nsr.get(name, 0.0) for name in sources), default=0.0)
        nsr_out = nsr[output]
        ranked.append({
            "node": node.name, "op": node.op_type, "added_nsr": _finite(nsr_out - nsr_in),
            "sqnr_in_db": _db(nsr_in), "sqnr_out_db": _db(nsr_out), "macs": int(macs.get(node.name, 0)),
        })
    ranked.sort(key=lambda item: (-(item["added_nsr"] if item["added_nsr"] is not None else math.inf), item["node"]))
    return ranked


def _finite(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def _db(nsr: float) -> Optional[float]:
    return -10.0 * math.log10(nsr) if 0 < nsr < math.inf else None


def compute_sensitivity(float_path: Path, qdq_path: Path, batches: Iterable[np.ndarray], threads: int = 0) -> dict:
    """The ranking (:func:`rank`) of the Q/DQ model ``qdq_path`` against ``float_path``, with the
    MACs per node (:func:`ptqcore.float_layers.node_macs`) of the float model."""
    import onnx

    from .float_layers import node_macs

    qdq_model = onnx.load(str(qdq_path))
    float_model = onnx.load(str(float_path))
    nodes = quantized_nodes(qdq_model)
    twins = float_names(qdq_model, float_model)
    pairs = {name: twins[name] for _, sources, output in nodes for name in sources + [output] if name in twins}
    nsr = tensor_nsr(float_path, qdq_path, pairs, batches, threads)
    macs = node_macs(float_model)
    return {"layers": rank(nodes, nsr, macs), "total_macs": int(sum(macs.values())),
            "macs_by_node": macs}


def batch_for(pixels: int) -> int:
    """Images per batch of the comparison: every intermediate tensor of a batch is held at once in
    both sessions, so the batch keeps the pixels of 16 images at 32x32 (16 on digits, 1 at 224x224)."""
    return max(1, 16 * 32 * 32 // max(1, pixels))


# -- in the suite ----------------------------------------------------------------------------------
def plain_int8(case: Case) -> Case:
    """The plain INT8 case an ``int8-mixed`` case repairs (the case itself for INT8)."""
    from dataclasses import replace

    return replace(case, precision=Precision.INT8)


def sensitivity(suite: "Suite", case: Case) -> dict:
    """The ranking of ``case``'s plain INT8 model, computed once per session and cached in the store
    (keyed by the float and Q/DQ files, the evaluation data and the measure's version)."""
    import json

    import onnxruntime

    from .int8_reference import reference_file
    from .store import file_sha256

    case = plain_int8(case)

    def make() -> dict:
        prepared = suite.int8_inputs(case).prepared_onnx
        qdq = reference_file(suite, case)
        data = suite.dataset(case.model)
        inputs = {"prepared_sha256": file_sha256(prepared), "qdq_sha256": file_sha256(qdq),
                  "data": data.fingerprint, "images": SENSITIVITY_IMAGES, "version": SENSITIVITY_VERSION,
                  "onnxruntime": onnxruntime.__version__}

        def build(path: Path) -> None:
            images = next(iter(data.evaluation_batches(SENSITIVITY_IMAGES)))[0]  # the first images
            step = batch_for(images.shape[-2] * images.shape[-1])
            batches = [images[i:i + step] for i in range(0, len(images), step)]
            path.write_text(json.dumps(compute_sensitivity(prepared, qdq, batches, suite.threads), sort_keys=True))

        entry = suite.store.get_or_build("sensitivity", inputs, "sensitivity.json", build,
                                         f"per-layer sensitivity of {case.id}")
        return json.loads(entry.path.read_text())

    return suite._once(("sensitivity", case.id), make)


def record_sensitivity(suite: "Suite", case: Case) -> List[dict]:
    """Compute the ranking of ``case`` and write it into its record as ``sensitivity``; returns it."""
    layers = sensitivity(suite, case)["layers"]
    suite.book.update(case, sensitivity=layers)
    return layers


def top_layers_line(layers: Sequence[dict], count: int = 5) -> str:
    """``a (Conv, +0.012 NSR), b (...)``: the first ``count`` ranked layers, for messages."""
    return ", ".join(f"{item['node']} ({item['op']}, +{item['added_nsr']:.3g} NSR)" if item["added_nsr"] is not None
                     else f"{item['node']} ({item['op']})" for item in layers[:count])


def drop_message_tail(suite: "Suite", case: Case, failing: bool) -> str:
    """What ``test_accuracy_drop`` adds to its message, and the ranking it records on the way.

    A plain INT8 case gets ``sensitivity`` in its record when it fails its limit or
    ``--ptq-sensitivity`` asks, and a failing one names its top layers; an ``int8-mixed`` case
    gives its ``mixed_note``. A ranking that cannot be computed is named, never hides the drop.
    """
    from .errors import error_line

    if case.precision is Precision.INT8_MIXED:
        note = suite.book.record(case).figures.get("mixed_note")
        return f"; {note}" if note else ""
    if case.precision is not Precision.INT8 or not (failing or suite.options.sensitivity):
        return ""
    try:
        layers = record_sensitivity(suite, case)
    except Exception as err:  # the drop is the finding; a failed ranking must not replace it
        return f"; the per-layer sensitivity could not be computed ({error_line(err)})"
    if not failing:
        return ""
    return (f"; the layers whose quantization adds the most error: {top_layers_line(layers)}"
            " (precision int8-mixed keeps the fewest of them in float that bring the drop within the limit)")

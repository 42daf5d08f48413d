"""Per-layer sensitivity of an INT8 case: which quantized nodes add the error, ranked.

**What is compared.** The float model (``prepared.onnx``, what was quantized) and the case's Q/DQ
file (its fake-quant reference, :mod:`ptqcore.study.int8_reference`) both run on the first
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
float removes (:func:`ptqcore.build.float_layers.keep_in_float`: float weights, unrounded inputs), so the
ranking is the order in which :mod:`ptqcore.study.mixed` excludes nodes. An activation with a few huge
outliers shows at its consumers: its range is wide, so the rounding of its typical values is
coarse. A node that amplifies noise it received (rather than adding its own) also ranks high, and
one that squashes it (a saturating Sigmoid) gets a negative figure; the greedy search's
verification on the evaluation split is what guards against a poor choice. Tensors are matched by
the node that makes them (:func:`float_names`), since the quantizer renames some.

**What NSR cannot see, and the task score that does.** A node's added NSR is measured before its
own output pair, so the clipping that pair does is charged to its consumers; a graph output has
none, so an output whose range clips the winning logits (a 1,000-class classifier's winner is one
value in 1,000) went unseen: on an ImageNet-pretrained model the final Gemm ranked 36th of 61, with
a negative figure because its input was already noisy, and ``int8-mixed`` kept 36 layers in float
where one would have done. So the first :data:`TASK_CANDIDATES` nodes by NSR and every *output
layer* (:func:`output_layers`: a node whose output reaches a graph output through Q/DQ nodes only)
are scored again by what keeping each alone in float does to the task (:func:`task_scores`): the
Q/DQ model is rebuilt with that node in float (the build ``int8-mixed`` would make) and run on the
same images; ``flips_removed`` is the share of images whose top-1 returns to the float model's,
``kl_removed`` the drop of the mean KL divergence of the softmax from the float model's (which
sees argmax damage before it flips). Those that help come first, by ``flips_removed`` then
``kl_removed`` (:func:`order_by_task`); every other node follows by NSR.

**Why not the top-1 effect of every layer.** Quantizing each layer alone (or leaving each alone in
float) and measuring top-1 costs one quantization and one accuracy pass per layer: 100 to 300 per
study model. NSR ranks them all from one pass of a few batches through two models; the task score
costs one rebuild and one pass over those few batches per candidate, for a handful of candidates.

**Images.** Evaluation images, as the suite's accuracy pass (never calibration images, on which
min/max ranges see no clipping at all); only the first :data:`SENSITIVITY_IMAGES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ptqcore.build.qdq_graph import QDQ_OPS, float_names, quantized_nodes
from ptqcore.case import Case, Precision

if TYPE_CHECKING:  # pragma: no cover
    from ptqcore.suite import Suite

#: Evaluation images the activations are compared on.
SENSITIVITY_IMAGES = 64
#: Layers a failure message and the report name (the record keeps every ranked node).
TOP_LAYERS = 10
#: Nodes with the largest added NSR that are scored again by the task (module docstring), beside
#: every output layer.
TASK_CANDIDATES = 8
#: Bumped when the measure changes, so cached rankings are recomputed. 2: task scores.
SENSITIVITY_VERSION = 2
#: ``rebuild(nodes, out_path)``: the case's Q/DQ model rebuilt with ``nodes`` kept in float.
Rebuild = Callable[[Tuple[str, ...], Path], Path]


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


def output_layers(qdq_model) -> List[str]:
    """Names of the nodes whose output reaches a graph output through Q/DQ nodes only (a
    classifier's last Gemm): the nodes whose own output pair's clipping no consumer measures."""
    producer = {out: node for node in qdq_model.graph.node for out in node.output}
    found: List[str] = []
    for output in qdq_model.graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type in QDQ_OPS and node.input:
            node = producer.get(node.input[0])
        if node is not None and node.name and node.name not in found:
            found.append(node.name)
    return found


def _logits(path: Path, batches: Sequence[np.ndarray], threads: int) -> np.ndarray:
    """The first output of the model at ``path`` on ``batches``, every graph optimization off."""
    import onnx

    session = _session(onnx.load(str(path)).SerializeToString(), threads)
    name = session.get_inputs()[0].name
    return np.concatenate([np.asarray(session.run(None, {name: np.ascontiguousarray(b, dtype=np.float32)})[0],
                                      dtype=np.float64).reshape(len(b), -1) for b in batches])


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def task_damage(float_logits: np.ndarray, logits: np.ndarray) -> Tuple[float, float]:
    """``(flip rate, mean KL)``: the share of images whose top-1 differs from the float model's, and
    the mean KL divergence of the softmax from the float model's (nats)."""
    flips = float(np.mean(float_logits.argmax(axis=1) != logits.argmax(axis=1)))
    reference = _log_softmax(float_logits)
    kl = float(np.mean(np.sum(np.exp(reference) * (reference - _log_softmax(logits)), axis=1)))
    return flips, max(kl, 0.0)


def task_scores(float_path: Path, qdq_path: Path, candidates: Sequence[str], rebuild: Rebuild,
                batches: Sequence[np.ndarray], scratch: Path, threads: int = 0) -> Dict[str, dict]:
    """What keeping each candidate alone in float does to the task (module docstring):
    ``{node: {"flips_removed", "kl_removed"}}``, both against the plain Q/DQ model on ``batches``."""
    reference = _logits(float_path, batches, threads)
    flips, kl = task_damage(reference, _logits(qdq_path, batches, threads))
    scores = {}
    for index, node in enumerate(candidates):
        path = rebuild((node,), Path(scratch) / f"float-{index}.onnx")
        node_flips, node_kl = task_damage(reference, _logits(path, batches, threads))
        scores[node] = {"flips_removed": flips - node_flips, "kl_removed": kl - node_kl}
    return scores


def order_by_task(layers: Sequence[dict], scores: Mapping[str, dict]) -> List[dict]:
    """``layers`` (in NSR order) with the task scores written in: the scored nodes that help the task
    (``flips_removed`` or ``kl_removed`` above 0) first, by ``flips_removed`` then ``kl_removed``;
    then every other node in NSR order. Pure logic, tested alone."""
    scored = [dict(item, **scores[item["node"]]) if item["node"] in scores else dict(item) for item in layers]
    helps = [item for item in scored if item.get("flips_removed", 0) > 0 or item.get("kl_removed", 0) > 0]
    helps.sort(key=lambda item: (-item["flips_removed"], -item["kl_removed"]))
    chosen = {id(item) for item in helps}
    return helps + [item for item in scored if id(item) not in chosen]


def compute_sensitivity(float_path: Path, qdq_path: Path, batches: Iterable[np.ndarray], threads: int = 0,
                        rebuild: Optional[Rebuild] = None) -> dict:
    """The ranking of the Q/DQ model ``qdq_path`` against ``float_path`` (:func:`rank`, then with
    ``rebuild`` the task scores of the candidates, :func:`order_by_task`), with the MACs per node
    (:func:`ptqcore.build.float_layers.node_macs`) of the float model."""
    import tempfile

    import onnx

    from ptqcore.build.float_layers import node_macs

    batches = list(batches)
    qdq_model = onnx.load(str(qdq_path))
    float_model = onnx.load(str(float_path))
    nodes = quantized_nodes(qdq_model)
    twins = float_names(qdq_model, float_model)
    pairs = {name: twins[name] for _, sources, output in nodes for name in sources + [output] if name in twins}
    nsr = tensor_nsr(float_path, qdq_path, pairs, batches, threads)
    macs = node_macs(float_model)
    layers = rank(nodes, nsr, macs)
    if rebuild is not None:
        named = {node.name for node, _, _ in nodes}
        candidates = [item["node"] for item in layers[:TASK_CANDIDATES]]
        candidates += [name for name in output_layers(qdq_model) if name in named and name not in candidates]
        with tempfile.TemporaryDirectory(prefix="ptqcore-sensitivity-") as scratch:
            scores = task_scores(float_path, qdq_path, candidates, rebuild, batches, Path(scratch), threads)
        layers = order_by_task(layers, scores)
    return {"layers": layers, "total_macs": int(sum(macs.values())), "macs_by_node": macs}


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
    from dataclasses import replace

    import onnxruntime

    from ptqcore.store import file_sha256
    from ptqcore.study.int8_reference import reference_file

    case = plain_int8(case)

    def make() -> dict:
        prepared = suite.int8_inputs(case).prepared_onnx
        qdq = reference_file(suite, case)
        data = suite.dataset(case.model)
        inputs = {"prepared_sha256": file_sha256(prepared), "qdq_sha256": file_sha256(qdq),
                  "data": data.fingerprint, "images": SENSITIVITY_IMAGES, "version": SENSITIVITY_VERSION,
                  "task_candidates": TASK_CANDIDATES, "onnxruntime": onnxruntime.__version__}
        backend = suite.backend(case.backend)
        int8 = suite.int8_inputs(case)

        def rebuild(nodes: Tuple[str, ...], out_path: Path) -> Path:
            return backend.int8_reference_onnx(case, replace(int8, float_nodes=nodes), out_path)

        def build(path: Path) -> None:
            images = next(iter(data.evaluation_batches(SENSITIVITY_IMAGES)))[0]  # the first images
            step = batch_for(images.shape[-2] * images.shape[-1])
            batches = [images[i:i + step] for i in range(0, len(images), step)]
            ranking = compute_sensitivity(prepared, qdq, batches, suite.threads, rebuild)
            path.write_text(json.dumps(ranking, sort_keys=True))

        _, ranking = suite.store.load_or_build("sensitivity", inputs, "sensitivity.json", build, read_ranking,
                                               f"per-layer sensitivity of {case.id}")
        return ranking

    return suite.once(("sensitivity", case.id), make)


def read_ranking(path: Path) -> dict:
    """A cached ranking (:func:`compute_sensitivity`'s); raises KeyError or TypeError for one that
    is not (then it is built again)."""
    import json

    ranking = json.loads(Path(path).read_text())
    missing = [key for key in ("layers", "total_macs", "macs_by_node") if key not in ranking]
    if missing:
        raise KeyError(f"{Path(path).name} lacks {', '.join(missing)}")
    if not all(isinstance(item, dict) and "node" in item and "op" in item for item in ranking["layers"]):
        raise TypeError(f"{Path(path).name} holds layers without node and op")
    return ranking


def record_sensitivity(suite: "Suite", case: Case) -> List[dict]:
    """Compute the ranking of ``case`` and write it into its record as ``sensitivity``; returns it."""
    layers = sensitivity(suite, case)["layers"]
    suite.book.update(case, sensitivity=layers)
    return layers


def layer_text(item: dict) -> str:
    """``fc (Gemm, in float undoes 40% of top-1 flips, +0.012 NSR)``: one ranked layer, for messages."""
    parts = [item["op"]]
    if item.get("flips_removed") is not None:
        parts.append(f"in float undoes {item['flips_removed']:.0%} of images' top-1 flips")
    if item.get("added_nsr") is not None:
        parts.append(f"{item['added_nsr']:+.3g} NSR")
    return f"{item['node']} ({', '.join(parts)})"


def top_layers_line(layers: Sequence[dict], count: int = 5) -> str:
    """The first ``count`` ranked layers (:func:`layer_text`), for messages."""
    return ", ".join(layer_text(item) for item in layers[:count])


def drop_message_tail(suite: "Suite", case: Case, failing: bool) -> str:
    """What ``test_accuracy_drop`` adds to its message, and the ranking it records on the way.

    A plain INT8 case gets ``sensitivity`` in its record when it fails its limit or
    ``--ptq-sensitivity`` asks, and a failing one names its top layers; an ``int8-mixed`` case
    gives its ``mixed_note``. A ranking that cannot be computed is named, never hides the drop.
    """
    from ptqcore.errors import error_line

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
    from ptqcore.build.calibration import describe_clipping

    ranges = suite.book.record(case).figures.get("ranges")
    clipping = f"; {case.recipe} ranges: {describe_clipping(ranges)}" if ranges else ""
    return (f"{clipping}; the layers whose quantization costs the most: {top_layers_line(layers)}"
            " (precision int8-mixed keeps the fewest of them in float that bring the drop within the limit)")

"""Layers kept in float inside a Q/DQ model, and what they weigh: graph surgery and MAC counts.

Two facts about ONNX Runtime's ``quantize_static(nodes_to_exclude=...)`` (``qdq_quantizer.py``,
1.19 to 1.32) decide :func:`keep_in_float`:

* every quantized node puts a Q/DQ pair on its inputs *and* its outputs, and the pair replaces the
  tensor for *all* its consumers (``replace_input_of_all_nodes``);
* so an excluded node keeps float weights but still reads the rounded activation (the DQ output)
  whenever a quantized neighbour quantized that tensor. An activation with a few huge outliers
  (a range far wider than its typical values) costs accuracy exactly there, and excluding its
  consumer would not help.

A *float layer* here is therefore the excluded node **and its activation inputs**: after
quantization each excluded node is rewired to read the unrounded values its float twin reads
(putting back a Relu / Clip the quantizer had folded into the pair's range), and a pair no node
reads any more is removed. What the neighbours need stays: a quantized
producer keeps its output pair where other quantized consumers read it. In TensorRT's form
(``DedicatedQDQPair``: one pair per consumer) an excluded node never gets a pair, so the rewiring
finds nothing to do there.

MACs: Conv, ConvTranspose, Gemm and MatMul, per image, from the ONNX shapes that
``quant_pre_process`` inferred; every other op counts 0 (their cost is not multiply-accumulate
bound). :func:`mac_share` is the share of the model's MACs that runs in float.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Sequence

from ptqcore.build.qdq_graph import float_names

#: Ops whose multiply-accumulates are counted.
MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def conv_macs(weight_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """MACs of one image through a Conv: every output element (``C_out x spatial``) sums
    ``C_in / group x kernel`` products, which is the weight's shape past its first axis (the group
    is already folded into it). ``output_shape`` is ``(C_out, *spatial)`` (no batch axis)."""
    per_output = 1
    for dim in weight_shape[1:]:
        per_output *= int(dim)
    count = 1
    for dim in output_shape:
        count *= int(dim)
    return count * per_output


def conv_transpose_macs(weight_shape: Sequence[int], input_shape: Sequence[int]) -> int:
    """MACs of one image through a ConvTranspose: each input element scatters into
    ``C_out / group x kernel`` outputs (the weight is ``(C_in, C_out / group, *kernel)``)."""
    per_input = 1
    for dim in weight_shape[1:]:
        per_input *= int(dim)
    count = 1
    for dim in input_shape:
        count *= int(dim)
    return count * per_input


def matmul_macs(a_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """MACs of one image through a MatMul / Gemm: each output element sums ``K`` products, ``K`` the
    last axis of ``A`` (of A transposed for Gemm: the caller passes the reduced axis last)."""
    count = 1
    for dim in output_shape:
        count *= int(dim)
    return count * int(a_shape[-1])


def mac_share(macs: Mapping[str, int], float_nodes: Iterable[str]) -> Optional[float]:
    """The share of all MACs in ``macs`` (node -> MACs) that the ``float_nodes`` hold, in [0, 1];
    None for a model with no counted MACs. Names not in ``macs`` count 0; duplicates count once."""
    total = sum(macs.values())
    if total <= 0:
        return None
    return sum(macs.get(name, 0) for name in set(float_nodes)) / total


def _shapes(model) -> Dict[str, list]:
    """Static shapes of every tensor the model declares, with the batch axis (the first) dropped
    where it is symbolic or 1: MACs are counted per image."""
    from onnx import numpy_helper

    shapes: Dict[str, list] = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = info.type.tensor_type.shape.dim
        if not dims:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        shapes[info.name] = shape
    for init in model.graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape) if init.dims else []
    return shapes


def node_macs(model) -> Dict[str, int]:
    """MACs per image of every named Conv / ConvTranspose / Gemm / MatMul node of an ONNX model whose
    shapes are known (a node whose shapes are not is left out, so shares stay honest upper bounds)."""
    shapes = _shapes(model)
    weights = {init.name for init in model.graph.initializer}
    out: Dict[str, int] = {}

    def per_image(shape):
        return None if shape is None or any(d is None for d in shape[1:]) else shape[1:]

    for node in model.graph.node:
        if node.op_type not in MAC_OPS or not node.name or len(node.input) < 2:
            continue
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        y = per_image(shapes.get(node.output[0]))
        if node.op_type == "Conv" and b is not None and y is not None:
            out[node.name] = conv_macs(b, y)
        elif node.op_type == "ConvTranspose" and b is not None and per_image(a) is not None:
            out[node.name] = conv_transpose_macs(b, per_image(a))
        elif node.op_type in ("Gemm", "MatMul") and a is not None and y is not None and len(a) >= 1:
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            reduced = a[0] if (node.op_type == "Gemm" and trans_a) else a[-1]
            if reduced is None and node.input[1] in weights and b:  # A's last axis from the weight
                reduced = b[0]
            if reduced is not None:
                out[node.name] = matmul_macs([reduced], y)
    return out


def keep_in_float(model, nodes: Iterable[str], float_model):
    """Give every node named in ``nodes`` the unrounded values its Q/DQ activation inputs were made
    from, then drop Q/DQ nodes nobody reads (weights: ``nodes_to_exclude`` already left them
    float). Changes the Q/DQ ``model`` in place and returns it (see the module docstring for why).

    Each input is found through ``float_model`` (what was quantized): the float node of the same
    name reads tensor ``F``; the Q/DQ model's tensor holding ``F``'s value is used
    (:func:`ptqcore.build.qdq_graph.float_names`). Where there is none because the quantizer removed
    the activation that makes ``F`` (a Relu or Clip after a Conv, whose clipping the Q/DQ range then
    does), a copy of that float node is put back in front of the float layer, so the model
    computes what the float model does. An input that neither finds keeps its Q/DQ pair."""
    wanted = set(nodes)
    twins = float_names(model, float_model)
    holding = {}  # float tensor -> the Q/DQ-model tensor with its value
    for qdq_name, float_name in twins.items():
        holding.setdefault(float_name, qdq_name)
    float_twins = {node.name: node for node in float_model.graph.node if node.name}
    float_producer = {out: node for node in float_model.graph.node for out in node.output}
    float_inits = {init.name: init for init in float_model.graph.initializer}
    inits = {init.name for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    restored = []
    for node in model.graph.node:
        twin = float_twins.get(node.name)
        if node.name not in wanted or twin is None:
            continue
        for index, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or index >= len(twin.input):
                continue
            wanted_value = twin.input[index]
            if wanted_value in holding:
                node.input[index] = holding[wanted_value]
                continue
            removed = float_producer.get(wanted_value)
            if removed is None or not all(i in holding or i in float_inits or not i for i in removed.input):
                continue
            copy = _copy_node(removed, holding, f"{wanted_value}_float")
            for init_name in copy.input:
                if init_name in float_inits and init_name not in inits:
                    model.graph.initializer.append(float_inits[init_name])
                    inits.add(init_name)
            restored.append((node, copy))
            node.input[index] = copy.output[0]
            holding[wanted_value] = copy.output[0]
    if restored:  # keep the graph topologically sorted: each copy just before its first reader
        before: Dict[int, list] = {}
        for consumer, copy in restored:
            before.setdefault(id(consumer), []).append(copy)
        ordered = [n for node in model.graph.node for n in before.get(id(node), []) + [node]]
        del model.graph.node[:]
        model.graph.node.extend(ordered)
    _drop_unread_qdq(model)
    return model


def _copy_node(node, holding: Mapping[str, str], output: str):
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = f"{node.name}_float"
    for index, name in enumerate(copy.input):
        copy.input[index] = holding.get(name, name)
    del copy.output[:]
    copy.output.append(output)
    return copy


def _drop_unread_qdq(model) -> None:
    outputs = {out.name for out in model.graph.output}
    while True:
        read = {name for node in model.graph.node for name in node.input} | outputs
        dead = [node for node in model.graph.node
                if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in read for o in node.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {name for node in model.graph.node for name in node.input} | outputs
    for init in [init for init in model.graph.initializer if init.name not in read]:
        model.graph.initializer.remove(init)  # the dropped pairs' scales and zero points

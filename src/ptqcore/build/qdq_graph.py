"""Reading a Q/DQ ONNX graph against the float graph it was quantized from (pure graph code, no runtime).

Used where a quantized node is named (:mod:`ptqcore.build.float_layers` keeps nodes in float,
:mod:`ptqcore.study.sensitivity` ranks them): which nodes read quantized activations, and which float
tensor holds the value of each Q/DQ-model tensor.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

#: The two operators a Q/DQ pair is made of.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def quantized_nodes(qdq_model) -> List[Tuple[object, List[str], str]]:
    """``(node, unrounded activation inputs, output)`` of every named node of a Q/DQ model that
    reads at least one DequantizeLinear output: the nodes ``nodes_to_exclude`` can name. An
    activation input is the tensor the Q/DQ pair was made from; weights (pairs made from
    initializers) are not activations. Names are the Q/DQ model's (:func:`float_names` maps them)."""
    initializers = {init.name for init in qdq_model.graph.initializer}
    producer = {out: node for node in qdq_model.graph.node for out in node.output}
    out = []
    for node in qdq_model.graph.node:
        if node.op_type in QDQ_OPS or not node.name or not node.output:
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
        twin = float_nodes.get(node.name) if node.op_type not in QDQ_OPS else None
        for index, name in enumerate(node.output):
            if twin is not None and index < len(twin.output) and twin.op_type == node.op_type:
                out[name] = twin.output[index]
            elif name in known:
                out[name] = name
    return out

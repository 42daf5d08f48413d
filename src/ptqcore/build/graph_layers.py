"""Layer groups of an ONNX graph: which node each runtime layer comes from, and which layer it belongs to.

Pure graph code (no runtime). A runtime profile names what ran: ONNX Runtime its nodes, some fused or
renamed (``X_nchwc``, ``X/duplicated_token_3``), TensorRT its layers with the ONNX nodes they fuse.
To compare the FP32, FP16 and INT8 artifacts of one model layer by layer, every node belongs to a
*layer group* named after the node that does its work:

* a node whose op is not a follower (:data:`FOLLOWER_OPS`) heads its own group (Conv, Gemm, Mul,
  Add, Concat, pooling, ...);
* a follower (normalization, activations, casts, and a ``Mul(x, Sigmoid(x))``: SiLU) joins the group
  of the node upstream of its first activation input, looking through Q/DQ pairs (a Conv's
  BatchNormalization and Relu are the Conv's);
* a QuantizeLinear joins the group of the node whose output it quantizes; a DequantizeLinear, and a
  QuantizeLinear of a weight or graph input, the group of the first node that reads it (so a layer's
  INT8 time is its kernel plus the Q/DQ nodes on its inputs and outputs); a DequantizeLinear no node
  reads (a graph output's) joins the group of the node that wrote the value.

Group names are node names, which ONNX Runtime's quantizer keeps for the nodes it quantizes, so the
groups of an FP32 file and of its Q/DQ file match by name. A node that ONNX Runtime's quantizer or
pre-processing folded away (a BatchNormalization, a Relu) has no twin, but its group has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ptqcore.build.qdq_graph import QDQ_OPS

#: The operators of a Q/DQ pair (:data:`ptqcore.build.qdq_graph.QDQ_OPS`) and ONNX Runtime's dynamic form.
QUANTIZE_OPS = QDQ_OPS + ("DynamicQuantizeLinear",)
#: Ops that join the group of the node upstream of them (element-wise on one activation, or a cast).
FOLLOWER_OPS = frozenset({
    "BatchNormalization", "Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "LeakyRelu", "PRelu",
    "Elu", "Selu", "Softplus", "Gelu", "Identity", "Cast", "Dropout",
})
#: Suffixes ONNX Runtime's graph transformers add to the names of the nodes they copy or rewrite
#: (``onnxruntime/core/optimizer``: ``nchwc_transformer.cc`` names a rewritten node after its output
#: plus ``_nchwc``, a BatchNormalization it turns into a 1x1 depthwise Conv after its output plus
#: ``_bn_nchwc``; ``graph.cc``'s ``GenerateNodeName`` appends ``_token_N``; the Q/DQ propagation
#: duplicates a shared DequantizeLinear as ``X/duplicated``), stripped from the end in this order.
_RUNTIME_SUFFIXES = (re.compile(r"_token_\d+$"), re.compile(r"/duplicated$"), re.compile(r"(_bn)?_nchwc$"))


def node_key(node) -> str:
    """A node's name, or for an unnamed node (ONNX allows them) ``op(first output)``: unique either way."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else ''})"


@dataclass(frozen=True)
class Node:
    """One ONNX node: its name, op type, the label a report shows (``Conv (depthwise)`` for a
    grouped Conv with one input channel per group) and its layer group."""

    name: str
    op_type: str
    label: str
    group: str


class GraphLayers:
    """The nodes of one ONNX graph by name, their groups, and the node behind a runtime name."""

    def __init__(self, model) -> None:
        graph = model.graph
        self._initializers = {init.name: init for init in graph.initializer}
        self._inputs = {inp.name for inp in graph.input}
        self._nodes = list(graph.node)
        self._by_name = {node_key(node): node for node in self._nodes}
        self._producer = {out: node for node in self._nodes for out in node.output if out}
        self._consumers: Dict[str, List[object]] = {}
        for node in self._nodes:
            for name in node.input:
                self._consumers.setdefault(name, []).append(node)
        self.nodes: Dict[str, Node] = {}
        for node in self._nodes:
            key = node_key(node)
            self.nodes[key] = Node(key, node.op_type, self._label(node), self._group(node, 0))

    @classmethod
    def from_onnx(cls, path: Path) -> "GraphLayers":
        import onnx

        return cls(onnx.load(str(path), load_external_data=False))

    # -- groups ---------------------------------------------------------------------------------
    def _label(self, node) -> str:
        if node.op_type != "Conv":
            return node.op_type
        group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        weight = self._weight(node.input[1]) if len(node.input) > 1 else None
        if group > 1 and weight is not None and len(weight.dims) > 1 and weight.dims[1] == 1:
            return "Conv (depthwise)"
        return "Conv (grouped)" if group > 1 else "Conv"

    def _weight(self, name: str):
        """The initializer behind ``name``, looking through a DequantizeLinear (a Q/DQ weight)."""
        for _ in range(3):
            if name in self._initializers:
                return self._initializers[name]
            node = self._producer.get(name)
            if node is None or node.op_type not in QUANTIZE_OPS:
                return None
            name = node.input[0]
        return None

    def _upstream(self, tensor: str):
        """The node that computes ``tensor``, looking through Q/DQ nodes; None for inputs and weights."""
        node = self._producer.get(tensor)
        while node is not None and node.op_type in QUANTIZE_OPS:
            node = self._producer.get(node.input[0])
        return node

    def _group(self, node, depth: int) -> str:
        if depth > 64:  # a chain of followers this long is a broken graph; stop at the node itself
            return node_key(node)
        if node.op_type == "DequantizeLinear" or (node.op_type in QUANTIZE_OPS and self._reads_no_activation(node)):
            reader = next(iter(self._consumers.get(node.output[0], []) if node.output else []), None)
            if reader is not None:
                return self._group(reader, depth + 1)
            upstream = self._upstream(node.input[0])  # a graph output's DequantizeLinear: its writer's group
            return self._group(upstream, depth + 1) if upstream is not None else node_key(node)
        if node.op_type in QUANTIZE_OPS or node.op_type in FOLLOWER_OPS or self._is_self_gate(node):
            source = next((name for name in node.input if name and name not in self._initializers), None)
            upstream = self._upstream(source) if source else None
            if upstream is not None:
                return self._group(upstream, depth + 1)
            if node.op_type in QUANTIZE_OPS:
                reader = next(iter(self._consumers.get(node.output[0], [])), None)
                return self._group(reader, depth + 1) if reader is not None else node_key(node)
        return node_key(node)

    def _is_self_gate(self, node) -> bool:
        """A ``Mul(x, Sigmoid(x))`` or ``Mul(x, HardSigmoid(x))`` (SiLU / Swish, a decomposed HardSwish):
        an activation, which ONNX Runtime fuses into the Conv before it in float."""
        if node.op_type != "Mul" or len(node.input) != 2:
            return False
        first, second = (self._upstream(name) for name in node.input)
        for gate, value in ((first, second), (second, first)):
            if gate is not None and gate.op_type in ("Sigmoid", "HardSigmoid") and gate.input:
                source = self._upstream(gate.input[0])
                if source is not None and value is not None and node_key(source) == node_key(value):
                    return True
        return False

    def _reads_no_activation(self, node) -> bool:
        """True for a Q/DQ node on a weight or graph input (nothing upstream computes its input)."""
        return self._upstream(node.input[0]) is None

    # -- runtime names --------------------------------------------------------------------------
    def node_for(self, runtime_name: str) -> Optional[Node]:
        """The node a runtime's name for it refers to: the node of that name, else the node of the
        name with ONNX Runtime's added suffixes removed (:data:`_RUNTIME_SUFFIXES`), else the node
        that writes a tensor of that name (a rewritten node named after its output); None when the
        runtime made the node up (a layout reorder, a node of its own fusions)."""
        name = runtime_name
        while True:
            if name in self.nodes:
                return self.nodes[name]
            producer = self._producer.get(name)
            if producer is not None:
                return self.nodes[node_key(producer)]
            stripped = name
            for suffix in _RUNTIME_SUFFIXES:
                stripped = suffix.sub("", stripped)
            if stripped == name:
                return None
            name = stripped

    def weight_shape(self, name: str) -> Optional[tuple]:
        """The shape of the weight (second input, looking through a DequantizeLinear) of node ``name``."""
        node = self._by_name.get(name)
        weight = self._weight(node.input[1]) if node is not None and len(node.input) > 1 else None
        return tuple(int(d) for d in weight.dims) if weight is not None else None

    def neighbour_label(self, node: Node) -> str:
        """For a Q/DQ node, the label of the float op it serves: the reader of a DequantizeLinear's
        output, the writer of a QuantizeLinear's input (looking past further Q/DQ nodes); "" else."""
        onnx_node = self._by_name.get(node.name)
        if onnx_node is None or node.op_type not in QUANTIZE_OPS:
            return ""
        if node.op_type == "DequantizeLinear":
            seen, current = 0, onnx_node
            while current is not None and current.op_type in QUANTIZE_OPS and seen < 8:
                current = next(iter(self._consumers.get(current.output[0], [])), None)
                seen += 1
            return self._label(current) if current is not None else "graph output"
        upstream = self._upstream(onnx_node.input[0])
        return self._label(upstream) if upstream is not None else "graph input"

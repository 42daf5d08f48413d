"""TensorRT layer names read into layer groups: fused names (``A + B``, ``PWN(A, B)``), ``Metadata``, reformats.

The inspector files are the hand-written ones of ``tests/data/tensorrt`` (their layouts follow real
TensorRT output, see its README); the reports are what ``IProfiler.report_layer_time`` would get.
"""

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from ptqcore.backends.tensorrt.profiler import inspector_layers, onnx_names, profile_from_reports
from ptqcore.build.graph_layers import GraphLayers

DATA = Path(__file__).resolve().parent / "data" / "tensorrt"


def _layers(name):
    return inspector_layers((DATA / name).read_text())


def _profile(layers, quantized, graph=None, ms=0.2):
    reports = [[(name, ms) for name, entry in layers.items() if entry.get("LayerType") != "NoOp"]] * 3
    return profile_from_reports(reports, layers, graph, quantized)


def test_metadata_names_the_onnx_nodes_of_a_fused_layer():
    layers = _layers("inspector-10.3-fp16-detailed.json")
    name = "/layer1/layer1.0/conv2/Conv + /layer1/layer1.0/Add + /layer1/layer1.0/relu_1/Relu"
    assert onnx_names(name, layers[name]) == ["/layer1/layer1.0/conv2/Conv", "/layer1/layer1.0/Add",
                                              "/layer1/layer1.0/relu_1/Relu"]
    profile = _profile(layers, quantized=False)
    by_name = {layer.layer: layer for layer in profile.layers}
    assert by_name[name].group == "/layer1/layer1.0/conv2/Conv" and by_name[name].precision == "fp16"
    copy = by_name["Reformatting CopyNode for Input Tensor 0 to /conv1/Conv + /relu/Relu"]
    assert copy.category == "reformat" and copy.group == "/conv1/Conv"


def test_fused_names_without_metadata_and_the_graph_that_tells_weights_from_nodes():
    layers = _layers("inspector-8.5-int8-detailed.json")
    fused = "onnx::Conv_46 + QuantizeLinear_15 + Conv_17 + PWN(PWN(HardSigmoid_18), Mul_19)"
    assert onnx_names(fused, layers[fused]) == ["onnx::Conv_46", "QuantizeLinear_15", "Conv_17", "HardSigmoid_18",
                                                "Mul_19"]
    plain = {layer.layer: layer for layer in _profile(layers, quantized=True).layers}
    assert plain[fused].group == "Conv_17" and plain[fused].precision == "int8" and plain[fused].category == "compute"
    nodes = [helper.make_node("Conv", ["x", "onnx::Conv_46"], ["c"], name="Conv_17"),
             helper.make_node("HardSigmoid", ["c"], ["h"], name="HardSigmoid_18"),
             helper.make_node("Mul", ["c", "h"], ["y"], name="Mul_19")]
    graph = GraphLayers(helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])))
    with_graph = {layer.layer: layer for layer in _profile(layers, quantized=True, graph=graph).layers}
    assert with_graph[fused].group == "Conv_17"
    qdq = with_graph["QuantizeLinear_2"]
    assert qdq.category == "reformat"  # TensorRT turned this Q into a reformat layer (Origin QDQ)


def test_a_names_only_engine_still_times_its_layers_and_says_what_it_cannot_tell():
    layers = _layers("inspector-8.5-names-only.json")
    profile = _profile(layers, quantized=True, ms=0.1)
    assert len(profile.layers) == len(layers) and profile.total_ms == pytest.approx(0.1 * len(layers))
    assert {layer.precision for layer in profile.layers} == {"unknown"}
    assert any("detailed profiling verbosity" in note for note in profile.notes)
    assert sum(layer.category == "reformat" for layer in profile.layers) == 2

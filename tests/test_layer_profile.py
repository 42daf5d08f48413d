"""Per-layer profiles: real ONNX Runtime profiles of small graphs, layer groups, matching across precisions.

The graphs are built here with ``onnx.helper`` and quantized by ONNX Runtime's own ``quantize_static``;
every profile is a real run of ONNX Runtime's profiler (no fake). Pure logic (summaries, causes) is
checked with hypothesis on generated profiles.
"""

from __future__ import annotations

import csv

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from ptqcore.backends.onnxruntime import OrtRunner
from ptqcore.backends.ort_profile import profile_from_events
from ptqcore.build.graph_layers import GraphLayers
from ptqcore.errors import BuildError
from ptqcore.measure.layer_profile import AGREEMENT_BAND, CATEGORIES, LayerProfile, LayerTime, summary, write_table
from ptqcore.study.layer_compare import ADDED, layer_changes, slowdown_causes

SIDE = 48


def _conv(name, x, out, cin, cout, rng, group=1):
    weight = numpy_helper.from_array((rng.standard_normal((cout, cin // group, 3, 3)) * 0.2).astype(np.float32),
                                     f"{name}.w")
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")
    node = helper.make_node("Conv", [x, weight.name, bias.name], [out], name=name, pads=[1, 1, 1, 1], group=group)
    return node, [weight, bias]


def _model(nodes, inits, channels=16):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _float_op_model(rng):
    """Conv -> Erf (no INT8 kernel in ONNX Runtime) -> Conv -> ReduceMean: the Erf must run in float."""
    a, ia = _conv("conv_a", "input", "a", 3, 16, rng)
    b, ib = _conv("conv_b", "e", "b", 16, 16, rng)
    erf = helper.make_node("Erf", ["a"], ["e"], name="erf")
    mean = helper.make_node("ReduceMean", ["b"], ["out"], name="mean", keepdims=0)
    return _model([a, erf, b, mean], ia + ib)


def _fused_model(rng):
    """Conv -> BatchNormalization -> Relu -> depthwise Conv -> Relu -> Conv -> Concat -> BatchNormalization
    -> GlobalAveragePool (a DenseNet's pattern): ONNX Runtime fuses the first BN and the Relus into the
    Convs, turns the BN after the Concat into a depthwise Conv and renames what it rewrites
    (``_nchwc``, ``_bn_nchwc``)."""
    nodes, inits = [], []
    conv1, i1 = _conv("conv1", "input", "c1", 3, 32, rng)
    scale, bias, mean, var = (numpy_helper.from_array(v.astype(np.float32), f"bn.{n}") for n, v in (
        ("scale", rng.uniform(0.5, 1.5, 32)), ("bias", rng.standard_normal(32) * 0.1),
        ("mean", rng.standard_normal(32) * 0.1), ("var", rng.uniform(0.5, 1.5, 32))))
    bn = helper.make_node("BatchNormalization", ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["n1"], name="bn1")
    relu1 = helper.make_node("Relu", ["n1"], ["r1"], name="relu1")
    dw, i2 = _conv("conv2_dw", "r1", "c2", 32, 32, rng, group=32)
    relu2 = helper.make_node("Relu", ["c2"], ["r2"], name="relu2")
    conv3, i3 = _conv("conv3", "r2", "c3", 32, 32, rng)
    cat = helper.make_node("Concat", ["c3", "r2"], ["k"], name="cat", axis=1)
    scale2, bias2, mean2, var2 = (numpy_helper.from_array(v.astype(np.float32), f"bn2.{n}") for n, v in (
        ("scale", rng.uniform(0.5, 1.5, 64)), ("bias", rng.standard_normal(64) * 0.1),
        ("mean", rng.standard_normal(64) * 0.1), ("var", rng.uniform(0.5, 1.5, 64))))
    bn2 = helper.make_node("BatchNormalization", ["k", "bn2.scale", "bn2.bias", "bn2.mean", "bn2.var"], ["n2"], name="bn2")
    pool = helper.make_node("GlobalAveragePool", ["n2"], ["out"], name="pool")
    nodes = [conv1, bn, relu1, dw, relu2, conv3, cat, bn2, pool]
    inits = i1 + [scale, bias, mean, var] + i2 + i3 + [scale2, bias2, mean2, var2]
    return _model(nodes, inits)


def _quantize(fp32_path, out_path, rng):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": rng.standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out_path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """{name: path} of the float-op model and the fused model, FP32 and their Q/DQ INT8 files."""
    folder = tmp_path_factory.mktemp("layer-profile")
    rng = np.random.default_rng(0)
    out = {}
    for name, make in (("float_op", _float_op_model), ("fused", _fused_model)):
        path = folder / f"{name}-fp32.onnx"
        onnx.save(make(rng), str(path))
        out[name] = path
        out[f"{name}-int8"] = _quantize(path, folder / f"{name}-int8.onnx", rng)
    return out


def _profile(path, quantized, calls=30):
    batch = np.random.default_rng(1).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
    with OrtRunner(path, threads=1) as runner:
        return runner.profile_layers(batch, calls, 3, quantized)


def test_a_float_op_between_qdq_pairs_is_timed_as_float_with_its_qdq_nodes(graphs):
    profile = _profile(graphs["float_op-int8"], quantized=True)
    assert profile.calls == 30 and len(profile.call_totals_ms) == 30
    erf = [layer for layer in profile.layers if layer.op_type == "Erf"]
    assert len(erf) == 1, [layer.layer for layer in profile.layers]
    (erf,) = erf
    assert erf.category == "float" and erf.precision == "fp32" and erf.group == "erf"
    assert erf.median_ms > 0
    around = [layer for layer in profile.layers if layer.category == "qdq" and layer.neighbour == "Erf"]
    # ONNX Runtime fuses the Convs' Q/DQ into QLinearConv; the pair that feeds Erf and the one after it stay
    assert {layer.op_type for layer in around} == {"QuantizeLinear", "DequantizeLinear"}, around
    assert all(layer.group == "erf" for layer in around if layer.op_type == "DequantizeLinear")
    assert all(layer.group == "erf" for layer in around if layer.op_type == "QuantizeLinear")
    convs = [layer for layer in profile.layers if layer.op_type == "QLinearConv"]
    assert {layer.group for layer in convs} == {"conv_a", "conv_b"} and all(c.category == "compute" for c in convs)
    groups = {row["group"]: row for row in layer_changes(_profile(graphs["float_op"], False), profile, "fp32")["rows"]}
    assert groups["erf"]["parts"]["float"] > 0 and groups["erf"]["parts"]["qdq"] > 0
    causes = slowdown_causes(_profile(graphs["float_op"], False), profile, 0.9, "FP32")
    texts = {cause["cause"]: cause["text"] for cause in causes["causes"]}
    assert "Erf (1)" in texts["float"] and "around Erf" in texts["qdq"]


def test_layers_match_across_precisions_through_the_names_onnx_runtime_gives_fused_nodes(graphs):
    fp32 = _profile(graphs["fused"], quantized=False)
    int8 = _profile(graphs["fused-int8"], quantized=True)
    source = {node.name for node in onnx.load(str(graphs["fused"])).graph.node}
    renamed = [layer.layer for layer in fp32.layers if layer.category == "compute" and layer.layer not in source]
    assert renamed, "ONNX Runtime kept every FP32 node name here: this test would not test the matching"
    changes = layer_changes(fp32, int8, "fp32")
    assert changes["matched"] == 5 and changes["only_reference"] == 0 and changes["only_quantized"] == 0, changes
    rows = {row["group"]: row for row in changes["rows"]}
    assert {"conv1", "conv2_dw", "conv3", "cat", "pool"} <= set(rows)
    (bn,) = [layer for layer in fp32.layers if layer.op_type.startswith("BatchNormalization")]  # the one after Concat
    assert bn.group == "cat"
    if bn.layer != "bn2":  # ONNX Runtime 1.32 runs it as a depthwise Conv named after its output; 1.19 as it is
        assert (bn.layer, bn.op_type) == ("n2_bn_nchwc", "BatchNormalization (as Conv)")
    assert "BatchNormalization" in {layer.op_type for layer in int8.layers if layer.group == "cat" and layer.category == "float"}
    assert rows["conv2_dw"]["reference_op"] == "Conv (depthwise)" and rows["conv2_dw"]["op"] == "QLinearConv (depthwise)"
    for name in ("conv1", "conv2_dw", "conv3"):
        assert rows[name]["reference_ms"] > 0 and rows[name]["ms"] > 0
    assert all(layer.group for layer in fp32.layers if layer.category == "compute")
    total = sum(row["ms"] or 0 for row in changes["rows"]) + changes["other"]["ms"]
    assert total == pytest.approx(changes["ms"])


def test_the_record_summary_and_table_hold_every_layer(graphs, tmp_path):
    profile = _profile(graphs["fused-int8"], quantized=True)
    record = summary(profile, latency_p50_ms=profile.total_ms, table_file="t.csv")
    assert record["vs_latency"] == pytest.approx(1.0) and record["flag"] is None
    assert sum(item["ms"] for item in record["by_category"].values()) == pytest.approx(
        sum(layer.median_ms for layer in profile.layers))
    rows = list(csv.DictReader(write_table(profile, tmp_path / "t.csv").open()))
    assert len(rows) == len(profile.layers) and not list(tmp_path.glob("*.partial"))
    assert [float(row["median_ms"]) for row in rows] == sorted((float(row["median_ms"]) for row in rows), reverse=True)


def test_a_trace_without_runs_after_the_warm_up_is_an_error(graphs):
    graph = GraphLayers.from_onnx(graphs["fused"])
    with pytest.raises(BuildError, match="no run after the warm-up"):
        profile_from_events([{"cat": "Session", "name": "model_run", "ts": 0, "dur": 5}], graph, False, skip_runs=1)


# -- pure logic ---------------------------------------------------------------------------------------
_layer = st.builds(
    LayerTime, layer=st.text("abcxyz/_", min_size=1, max_size=6), op_type=st.sampled_from(["Conv", "Mul", "Concat"]),
    precision=st.sampled_from(["int8", "fp32"]), category=st.sampled_from(CATEGORIES),
    group=st.sampled_from(["", "g1", "g2", "g3"]), neighbour=st.sampled_from(["", "Concat"]), provider=st.just("cpu"),
    times_ms=st.lists(st.floats(0.0, 5.0), min_size=3, max_size=3).map(tuple))


def _profile_of(layers):
    layers = tuple({layer.layer: layer for layer in layers}.values())
    totals = tuple(sum(layer.times_ms[i] for layer in layers) for i in range(3))
    return LayerProfile(layers, totals, 3, "test")


@settings(max_examples=60, deadline=None)
@given(st.lists(_layer, min_size=1, max_size=12), st.lists(_layer, min_size=1, max_size=12),
       st.floats(0.1, 3.0))
def test_changes_and_causes_account_for_the_time_they_name(reference, quantized, speedup):
    ref, mine = _profile_of(reference), _profile_of(quantized)
    changes = layer_changes(ref, mine, "fp32", top=3)
    listed = changes["rows"]
    assert len(listed) <= 3 and changes["groups"] == len(listed) + changes["other"]["groups"]
    assert sum(row["ms"] or 0 for row in listed) + changes["other"]["ms"] == pytest.approx(changes["ms"])
    deltas = [abs(row["delta_ms"]) for row in listed]
    assert deltas == sorted(deltas, reverse=True)
    assert ADDED not in {row["group"] for row in listed} or any(not layer.group for layer in ref.layers + mine.layers)
    causes = slowdown_causes(ref, mine, speedup, "FP32")
    if speedup > 1 or mine.total_ms <= 0:
        assert causes is None
        return
    for cause in causes["causes"]:
        assert cause["ms"] > 0 and cause["share"] == pytest.approx(cause["ms"] / mine.total_ms)
    by_category = {c: sum(layer.median_ms for layer in mine.layers if layer.category == c) for c in CATEGORIES}
    for cause in causes["causes"]:
        if cause["cause"] in by_category:
            assert cause["ms"] == pytest.approx(by_category[cause["cause"]])


@given(st.floats(0.001, 100.0), st.floats(0.001, 100.0))
def test_a_profile_far_from_the_latency_is_flagged(profiled, latency):
    profile = LayerProfile((LayerTime("x", "Conv", "fp32", "compute", "x", "", "cpu", (profiled,)),), (profiled,), 1, "t")
    record = summary(profile, latency, None)
    low, high = AGREEMENT_BAND
    assert record["vs_latency"] == pytest.approx(profiled / latency)
    assert (record["flag"] is None) == (low <= profiled / latency <= high)
    assert summary(profile, None, None)["flag"]


# -- the suite with --ptq-profile-layers, end to end on the tiny model --------------------------------
def test_a_profiled_run_writes_tables_beside_its_json_and_pairs_int8_with_fp32(copy_tiny_cache, tiny_cli_options,
                                                                            tmp_path):
    import json
    import subprocess

    from conftest import REPO, suite_command

    out = tmp_path / "run.json"
    command = suite_command(tmp_path, copy_tiny_cache(), tiny_cli_options, out)
    command[3:3] = [str(REPO / "benchmarks" / "test_layer_profile.py")]
    done = subprocess.run(command + ["--ptq-profile-layers"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    records = {r["case"]: r for r in json.loads(out.read_text())["ptqcore"]["records"]}
    profiled = {case: r for case, r in records.items() if r.get("layer_profile")}
    assert set(profiled) == {case for case, r in records.items() if r["precision"] != "base"}
    for case, record in profiled.items():
        profile = record["layer_profile"]
        assert profile["latency_p50_ms"] == record["latency_ms"]["p50"]  # checked against the timed figure itself
        table = tmp_path / profile["file"]
        assert profile["file"] == f"run.layers/{case}.csv" and table.is_file()
        assert len(table.read_text().splitlines()) == profile["layers"] + 1
    int8 = records["tiny_cnn-int8-onnxruntime-cpu-b1"]
    assert int8["layer_changes"]["reference"] == "tiny_cnn-fp32-onnxruntime-cpu-b1"
    assert int8["layer_changes"]["matched"] >= 3
    assert int8["layer_changes"]["speedup"] == pytest.approx(int8["speedup_vs_fp32"])  # measured, not profiled
    assert int8["layer_changes"]["reference_precision"] == "FP32"
    if int8["speedup_vs_fp32"] <= 1:
        assert int8["int8_slowdown"]["causes"], int8["int8_slowdown"]
    else:
        assert int8["int8_slowdown"] is None
    lines = done.stdout.splitlines()
    last_latency = max(i for i, line in enumerate(lines) if "test_inference.py" in line)
    assert all(i > last_latency for i, line in enumerate(lines) if "profiling the layers of" in line)


@given(st.one_of(st.none(), st.floats(0.0, 1e4)))
def test_the_profiled_calls_last_about_the_planned_time_within_bounds(p50):
    from ptqcore.study.layer_profiles import MAX_CALLS, MIN_CALLS, PROFILE_SECONDS, profile_calls

    calls = profile_calls(p50)
    assert MIN_CALLS <= calls <= MAX_CALLS
    if p50 and MIN_CALLS < calls < MAX_CALLS:
        assert (calls - 1) * p50 < 1e3 * PROFILE_SECONDS <= calls * p50


def test_tables_beside_the_json_are_named_relative_to_it(tmp_path):
    from ptqcore.case import Case, Precision
    from ptqcore.study.layer_profiles import table_name, twin_of

    case = Case("m", Precision.INT8, "onnxruntime", "cpu", 1, "entropy")
    path, name = table_name(tmp_path / "run.layers", tmp_path, case)
    assert path == tmp_path / "run.layers" / f"{case.id}.csv" and name == f"run.layers/{case.id}.csv"
    assert table_name(tmp_path / "elsewhere", tmp_path / "run", case)[1] == str((tmp_path / "elsewhere" / f"{case.id}.csv").resolve())
    assert twin_of(case) == Case("m", Precision.FP32, "onnxruntime", "cpu", 1)
    assert twin_of(Case("m", Precision.INT8, "tensorrt", "cuda", 8, "entropy")).precision is Precision.FP16


def test_the_profilers_own_cost_is_measured_and_taken_off_each_node(graphs):
    from ptqcore.backends.ort_profile import profiler_cost
    from ptqcore.measure.layer_profile import ProfilerCost

    cost = profiler_cost(OrtRunner(graphs["fused"], threads=1)._options, ("CPUExecutionProvider",))
    assert cost.per_layer_ms + 3 * cost.per_input_ms > 0, cost  # ONNX Runtime formats shapes inside each node's span
    assert "1 threads" in cost.how
    profile = _profile(graphs["fused-int8"], quantized=True)
    assert profile.cost == cost and profile.raw_total_ms > profile.total_ms
    record = summary(profile, profile.total_ms, None)
    assert record["raw_profiled_ms"] > record["profiled_ms"] and record["profiler_cost"]["how"] == cost.how
    graph = GraphLayers.from_onnx(graphs["fused"])
    run = {"cat": "Session", "name": "model_run", "ts": 100, "dur": 50}
    node = {"cat": "Node", "name": "conv1_kernel_time", "ts": 110, "dur": 10,
            "args": {"op_name": "Conv", "provider": "CPUExecutionProvider",
                     "input_type_shape": [{"float": [1, 3, 48, 48]}, {"float": [32, 3, 3, 3]}, {"float": [32]}]}}
    tiny = {"cat": "Node", "name": "relu1_kernel_time", "ts": 130, "dur": 2,
            "args": {"op_name": "Relu", "provider": "CPUExecutionProvider", "input_type_shape": [{"float": [1]}]}}
    read = profile_from_events([run, node, tiny], graph, False, 0, ProfilerCost(0.002, 0.001, "test"))
    times = {layer.layer: layer.median_ms for layer in read.layers}
    assert times == {"conv1": pytest.approx(0.005), "relu1": 0.0}  # 10 - (2 + 3 x 1) us; never below 0
    assert read.raw_total_ms == pytest.approx(0.012) and read.total_ms == pytest.approx(0.005)


def test_silu_joins_its_conv_but_a_squeeze_excitation_gate_heads_its_own_group():
    rng = np.random.default_rng(3)
    conv, inits = _conv("conv", "input", "c", 3, 8, rng)
    fc, fc_inits = _conv("fc", "c", "f", 8, 8, rng)
    nodes = [conv, helper.make_node("Sigmoid", ["c"], ["s"], name="sig"), helper.make_node("Mul", ["c", "s"], ["m"], name="silu"),
             fc, helper.make_node("Sigmoid", ["f"], ["g"], name="gate"), helper.make_node("Mul", ["m", "g"], ["out"], name="scale")]
    graph = GraphLayers(_model(nodes, inits + fc_inits))
    assert graph.nodes["silu"].group == "conv" and graph.nodes["sig"].group == "conv"
    assert graph.nodes["gate"].group == "fc" and graph.nodes["scale"].group == "scale"


def test_fused_nodes_named_after_their_op_are_matched_by_op_and_weight_in_graph_order(graphs):
    """ONNX Runtime 1.19 (JetPack 5's Python 3.8 floor) names fused quantized Convs ``QLinearConv``,
    ``QLinearConv_token_4`` and lists per-channel scales where the pre-packed weight was."""
    graph = GraphLayers.from_onnx(graphs["float_op-int8"])

    def node(name, ts, inputs):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": 10,
                "args": {"op_name": "QLinearConv", "provider": "CPUExecutionProvider", "input_type_shape": inputs}}

    packed = [{"uint8": [1, 48, 48, 3]}, {"float": []}, {"uint8": []}, {"float": [16]}, {"int8": [16]}]
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              node("QLinearConv", 10, packed), node("QLinearConv_token_4", 50, packed)]
    profile = profile_from_events(events, graph, True, 0)
    assert {layer.layer: layer.group for layer in profile.layers} == {"QLinearConv": "conv_a", "QLinearConv_token_4": "conv_b"}
    assert any("matched to ONNX nodes by op type and weight shape" in note for note in profile.notes)


def test_without_a_json_the_tables_go_to_a_folder_of_the_sessions_own(tiny_cache, tiny_settings):
    from pathlib import Path

    from ptqcore.case import Case, Precision
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    study = Study(SuiteOptions(models=("tiny",), cache_dir=tiny_cache, telemetry=False, **tiny_settings))
    figures = study.profile_layers(Case("tiny_cnn", Precision.FP32, "onnxruntime", "cpu", 1))
    table = Path(figures["file"])
    assert table.is_absolute() and table.is_file() and table.parent.parent == tiny_cache / "layer-profiles"
    assert figures["latency_p50_ms"] is None and figures["flag"] == "no measured latency to check the profile against"
    assert study.book.record(Case("tiny_cnn", Precision.FP32, "onnxruntime", "cpu", 1)).figures["layer_profile"] == figures

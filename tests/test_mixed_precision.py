"""Per-layer sensitivity, MAC shares and the int8-mixed search (ptqcore.study.sensitivity, float_layers, mixed).

Pure logic with hypothesis; end to end on the tiny model with a planted sensitive layer: one
output channel of the third convolution scaled up 1000x (its BatchNorm's scale and shift; ReLU is
positive-homogeneous) and the fourth convolution's weights on that channel scaled down 1000x. The
float function is unchanged, but the activation between them now has a few huge values, so its
per-tensor INT8 range is 1000x too wide and rounding wipes out every other channel: the fourth
convolution must rank first and be the first layer kept in float.
"""

import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptqcore.build.float_layers import conv_macs, mac_share, matmul_macs
from ptqcore.case import Case, Precision
from ptqcore.results.runfile import load_run_file
from ptqcore.study.mixed import choose, greedy_counts, mixed_note

# -- MACs ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(groups=st.integers(1, 3), cin_per=st.integers(1, 3), cout_per=st.integers(1, 3), k=st.integers(1, 3),
       side=st.integers(3, 7), stride=st.integers(1, 2))
def test_conv_macs_match_torch_flop_counter(groups, cin_per, cout_per, k, side, stride):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv2d(cin_per * groups, cout_per * groups, k, stride=stride, groups=groups, bias=False)
    x = torch.zeros(1, cin_per * groups, side, side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        y = conv(x)
    assert conv_macs(tuple(conv.weight.shape), tuple(y.shape[1:])) * 2 == counter.get_total_flops()


@given(m=st.integers(1, 50), k=st.integers(1, 50))
def test_matmul_macs_is_outputs_times_reduced_axis(m, k):
    assert matmul_macs([k], [m]) == m * k


macs_maps = st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 10**6), min_size=1, max_size=8)


@given(macs=macs_maps, data=st.data())
def test_mac_share_is_a_fraction_that_adds_over_disjoint_sets(macs, data):
    names = sorted(macs)
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True))
    rest = [n for n in names if n not in chosen]
    total = sum(macs.values())
    if total == 0:
        assert mac_share(macs, chosen) is None
        return
    share, other = mac_share(macs, chosen), mac_share(macs, rest)
    assert 0.0 <= share <= 1.0
    assert math.isclose(share + other, 1.0)
    assert mac_share(macs, chosen + chosen + ["not-a-node"]) == share  # duplicates once, unknown names 0


@given(pixels=st.integers(1, 1024 * 1024))
def test_the_comparison_batch_holds_at_most_16_digits_images_worth_of_pixels(pixels):
    from ptqcore.study.sensitivity import batch_for

    batch = batch_for(pixels)
    assert batch >= 1 and (batch == 1 or batch * pixels <= 16 * 32 * 32)
    assert batch_for(32 * 32) == 16


# -- the greedy search --------------------------------------------------------------------------------
drops_lists = st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=300)


@given(drops=drops_lists, limit=st.floats(0, 10))
def test_search_finds_the_fewest_layers_in_about_2_log2_evaluations(drops, limit):
    falling = sorted(drops, reverse=True)  # drop[k-1] with k layers in float, falling with k
    evaluated = greedy_counts(lambda k: falling[k - 1], len(falling), limit)
    fewest = next((k for k in range(1, len(falling) + 1) if falling[k - 1] <= limit), None)
    assert len(evaluated) <= 2 * math.ceil(math.log2(len(falling) + 1)) + 1
    chosen = choose(evaluated, limit)
    if fewest is None:  # unreachable: the whole ranking was tried, the best kept
        assert len(falling) in evaluated and evaluated[chosen] == min(evaluated.values())
    else:
        assert chosen == fewest


def test_search_keeps_the_lowest_drop_when_the_limit_is_out_of_reach():
    drops = {1: 5.0, 2: 3.0, 4: 3.0, 8: 4.0}
    assert choose(drops, 2.0) == 2
    assert mixed_note({"reached": False, "drop_pp": 3.0, "float_layers": ["a", "b"], "ranked_layers": 8}) == (
        "cannot reach the limit: best drop 3.00 pp with 2 float layers")
    assert mixed_note({"reached": True, "drop_pp": 1.0, "float_layers": ["a"], "ranked_layers": 8}) == (
        "1 of 8 ranked layers in float")


# -- end to end on the tiny model ---------------------------------------------------------------------
PLANT_SCALE = 1000.0
PLANTED_CHANNEL = 5


@pytest.fixture(scope="module")
def planted(copy_tiny_cache, tiny_settings, tmp_path_factory):
    """A Suite whose tiny_cnn base has the planted layer (weights from a folder), and the name of the
    ONNX node that reads the planted activation (the only 64 -> 64 3x3 convolution)."""
    import onnx
    import torch

    from ptqcore.models.training import save_state_dict
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    cache = copy_tiny_cache()
    trained = Study(SuiteOptions(models=("tiny",), cache_dir=cache, telemetry=False, **tiny_settings))
    module = trained.base_model("tiny_cnn").module
    with torch.no_grad():
        module[7].weight[PLANTED_CHANNEL] *= PLANT_SCALE  # BatchNorm after the 1x1 conv: output channel x1000
        module[7].bias[PLANTED_CHANNEL] *= PLANT_SCALE
        module[9].weight[:, PLANTED_CHANNEL] /= PLANT_SCALE  # the next conv reads it back /1000
    weights = tmp_path_factory.mktemp("planted-weights")
    save_state_dict(module, weights / "tiny_cnn.pt")
    suite = Study(SuiteOptions(models=("tiny",), cache_dir=cache, telemetry=False, weights=str(weights),
                               calibrations=("minmax",), precisions=(Precision.INT8, Precision.INT8_MIXED),
                               **tiny_settings))
    plain = Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "minmax")
    prepared = onnx.load(str(suite.int8_inputs(plain).prepared_onnx))
    shapes = {init.name: tuple(init.dims) for init in prepared.graph.initializer}
    (reader,) = [n.name for n in prepared.graph.node if n.op_type == "Conv" and shapes.get(n.input[1]) == (64, 64, 3, 3)]
    return suite, plain, reader


def test_planted_sensitive_layer_is_ranked_first_and_kept_in_float_first(planted):
    from ptqcore.study.mixed import mixed_figures, skip_reason
    from ptqcore.study.sensitivity import record_sensitivity

    suite, plain, reader = planted
    mixed = replace(plain, precision=Precision.INT8_MIXED)
    assert suite.quality(plain)["accuracy_drop_pp"] > 2.0  # the planted outliers break plain INT8
    assert skip_reason(suite, mixed) is None
    layers = record_sensitivity(suite, plain)
    assert layers[0]["node"] == reader
    assert layers[0]["added_nsr"] > 10 * layers[1]["added_nsr"]
    assert suite.book.record(plain).figures["sensitivity"] == layers

    quality = suite.quality(mixed)
    assert quality["float_layers"] == [reader]  # one layer in float was enough
    assert quality["accuracy_drop_pp"] <= 2.0
    assert quality["mixed_note"].startswith("1 of ")
    assert quality["mixed_search"]["evaluations"][0] == {"float_layers": 1, "drop_pp": quality["accuracy_drop_pp"]}
    assert 0 < quality["float_macs_share"] < 1
    # the record's figures come from the artifact the case runs: the same float layer, its own file
    assert quality["artifact_sha256"] != suite.quality(plain)["artifact_sha256"]
    assert mixed_figures(suite, mixed)["float_layers"] == [reader]


def test_the_float_layer_reads_the_unrounded_activation(planted):
    import onnx

    suite, plain, reader = planted
    mixed = replace(plain, precision=Precision.INT8_MIXED)
    model = onnx.load(str(suite.artifact(mixed).path))
    producer = {out: node for node in model.graph.node for out in node.output}
    (node,) = [n for n in model.graph.node if n.name == reader]
    weights = {init.name: init for init in model.graph.initializer}
    assert producer[node.input[0]].op_type != "DequantizeLinear"  # its activation input is unrounded
    assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT  # and its weights float


# -- through the plugin -------------------------------------------------------------------------------
pytest_plugins = ["pytester"]
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_a_passing_int8_case_skips_its_mixed_case_with_the_reason_and_records_its_ranking_on_request(
        pytester, tiny_cache, tiny_cli_options):
    pytester.path.joinpath("test_thresholds.py").write_text((BENCHMARKS / "test_thresholds.py").read_text())
    result = pytester.runpytest_subprocess(
        "-p", "ptqcore.plugin", "-p", "no:cacheprovider", "-rs", "--ptq-models", "tiny", "--ptq-cache-dir",
        str(tiny_cache), *tiny_cli_options, "--ptq-precisions", "int8,int8-mixed", "--ptq-sensitivity",
        "-k", "accuracy_drop", "--benchmark-json", "out.json", "test_thresholds.py")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*tiny_cnn-int8-mixed-onnxruntime-cpu-b1: plain INT8 passes (*"
                                 " pp <= 2.0 pp): no layer needs to stay in float*"])
    records = {r["case"]: r for r in load_run_file(pytester.path / "out.json", allow_incomplete=True).records}
    mixed = records["tiny_cnn-int8-mixed-onnxruntime-cpu-b1"]
    assert mixed["status"] == "skipped" and mixed["skip_reason"].startswith("plain INT8 passes")
    ranking = records["tiny_cnn-int8-onnxruntime-cpu-b1"]["sensitivity"]
    assert [item["op"] for item in ranking].count("Conv") == 4 and ranking[0]["added_nsr"] >= ranking[-1]["added_nsr"]


def test_int8_mixed_is_a_precision_name_and_a_typo_is_a_one_line_usage_error(pytester):
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-precisions", "int8-mix")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ptq-precisions: unknown int8-mix; valid: base, fp32, fp16, int8, int8-mixed"])

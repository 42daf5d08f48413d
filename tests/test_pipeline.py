"""End to end on the tiny model: train, export, FP16, INT8 (real ONNX Runtime quantization), evaluate.

Everything here is real (torch, ONNX export, onnxruntime.quantization, the digits data set); only
the model is small, so the whole pipeline runs in seconds.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tiny_model import TINY_SETTINGS

from ptqcore.build.kernel_probe import resolve_recipe
from ptqcore.case import Case, Precision
from ptqcore.cpu_isa import detect_cpu_isa
from ptqcore.errors import ModelLoadError
from ptqcore.options.suite_options import SuiteOptions
from ptqcore.study.session import Study


def tiny_options(cache, **overrides):
    settings = dict(models=("tiny",), cache_dir=cache, compress_rounds=1, **TINY_SETTINGS)  # the warm model's
    settings.update(overrides)
    return SuiteOptions(**settings)


@pytest.fixture(scope="module")
def cache(copy_tiny_cache):
    return copy_tiny_cache()  # the session's trained tiny model, in a copy this module may change


@pytest.fixture(scope="module")
def suite(cache):
    return Study(tiny_options(cache))


def case(precision, batch=1):
    if precision is Precision.BASE:
        return Case("tiny_cnn", precision, "torch", "cpu", batch)
    return Case("tiny_cnn", precision, "onnxruntime", "cpu", batch, "minmax" if precision is Precision.INT8 else "")


def test_base_model_learns_digits(suite):
    quality = suite.quality(case(Precision.BASE))
    assert quality["top1"] >= 0.85, quality
    assert quality["size_reduction"] == 1.0


def test_fp32_onnx_matches_pytorch(suite):
    batch = suite.sample_batch(case(Precision.FP32, 4))
    with suite.runner(case(Precision.BASE)) as torch_runner, suite.runner(case(Precision.FP32)) as ort_runner:
        np.testing.assert_allclose(ort_runner.infer(batch), torch_runner.infer(batch), rtol=1e-3, atol=1e-4)
    quality = suite.quality(case(Precision.FP32))
    assert quality["agreement_top1"] == 1.0 and abs(quality["accuracy_drop_pp"]) < 1e-9


def test_fp16_halves_the_file_and_keeps_predictions(suite):
    quality = suite.quality(case(Precision.FP16))
    fp32 = suite.quality(case(Precision.FP32))
    assert fp32["size_bytes"] / quality["size_bytes"] > 1.6
    assert quality["agreement_top1"] >= 0.98
    model = onnx.load(str(suite.artifact(case(Precision.FP16)).path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stay FP32


def test_int8_is_real_qdq_per_channel_in_the_layout_auto_picks_for_this_cpu(suite):
    layout = resolve_recipe("auto")
    assert suite.int8_layout == layout
    model = onnx.load(str(suite.artifact(case(Precision.INT8)).path))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    producers = {out: node for node in model.graph.node for out in node.output}
    for name in conv_weights:
        dq = producers[name]
        assert dq.op_type == "DequantizeLinear"
        weight, scale = initializers[dq.input[0]], initializers[dq.input[1]]
        assert weight.dtype == np.int8
        assert scale.ndim == 1 and scale.shape[0] == weight.shape[0]  # per output channel
        if "reduce-range" in layout:
            assert np.abs(weight.astype(int)).max() <= 64  # 7-bit weights
    activation_zero_points = [initializers[n.input[2]] for n in model.graph.node
                              if n.op_type == "QuantizeLinear" and n.input[2] in initializers]
    expected = np.uint8 if layout.startswith("u8") else np.int8
    assert activation_zero_points and all(zp.dtype == expected for zp in activation_zero_points)
    quality = suite.quality(case(Precision.INT8))
    assert quality["agreement_top1"] >= 0.95, quality
    assert quality["size_bytes"] < suite.quality(case(Precision.FP32))["size_bytes"]


def test_int8_record_names_its_recipe_and_splits_the_drop_into_parts_that_add_up(suite):
    quality = suite.quality(case(Precision.INT8))
    assert quality["int8_recipe"] == suite.int8_layout and quality["cpu_isa"] == detect_cpu_isa().name
    assert quality["per_channel"] is True and quality["reduce_range"] == ("reduce-range" in suite.int8_layout)
    parts = quality["accuracy_drop_quantization_pp"] + quality["accuracy_drop_kernel_pp"]
    assert parts == pytest.approx(quality["accuracy_drop_pp"], abs=1e-9)
    assert quality["top1_base"] - quality["top1_reference"] == pytest.approx(quality["accuracy_drop_quantization_pp"] / 100)
    # the layout auto picks adds (almost) nothing to what the Q/DQ file itself computes
    assert quality["agreement_reference"] >= 0.97 and quality["accuracy_drop_kernel_pp"] <= 1.0, quality


@pytest.mark.parametrize("layout", ["u8s8", "s8s8", "u8s8-reduce-range"])
def test_every_int8_layout_builds_and_runs_on_any_cpu_in_reference_mode(suite, layout):
    """Each forced layout is a valid Q/DQ model whose fake-quant reference agrees with FP32; what its
    kernels add on this CPU is recorded (and judged by the suite's kernel check, not here)."""
    forced = Study(tiny_options(suite.options.cache_dir, int8_recipe=layout))  # same base and ranges
    assert forced.artifact(case(Precision.INT8)).sha256 != suite.artifact(case(Precision.INT8)).sha256 or (
        layout == suite.int8_layout)
    quality = forced.quality(case(Precision.INT8))
    assert quality["int8_recipe"] == layout
    assert quality["top1_reference"] >= quality["top1_base"] - 0.05, quality


def test_compression_rounds_time_both_phases_without_touching_the_cache(suite, cache):
    """Phase 1 is timed once per model (warm-up + measured rounds, remembered for every precision);
    a phase 2 round starts from the cached ONNX file and reads or writes nothing in the cache."""
    suite.onnx("tiny_cnn")  # the ONNX file phase 2 starts from, made before any round
    before = sorted(p.name for p in cache.rglob("*"))
    exports = suite.phase_one_rounds(case(Precision.INT8))
    assert len(exports) == suite.options.compress_rounds
    assert all(r.export_s > 0 and r.build_s is None and set(r.resources) >= {"export"} for r in exports)
    assert suite.phase_one_rounds(case(Precision.FP16)) is exports  # one measurement per model
    measured = suite.compress_once(case(Precision.INT8))
    assert measured.export_s is None and measured.build_s > 0
    assert set(measured.resources) >= {"calibration", "build"} and "export" not in measured.resources
    build = measured.resources["build"]
    assert build["rss_bytes_peak"] > 0 and build["duration_s"] >= measured.build_s * 0.5
    assert sorted(p.name for p in cache.rglob("*")) == before
    suite.record_compression(case(Precision.FP16), [suite.compress_once(case(Precision.FP16))])
    figures = suite.book.record(case(Precision.FP16)).figures
    assert figures["export_s_rounds"] == [r.export_s for r in exports]
    assert set(figures["resources"]) >= {"export", "build"}


def test_second_run_reuses_the_cache_and_says_so(suite, cache):
    suite.quality(case(Precision.INT8))
    messages = []
    again = Study(tiny_options(cache), report=messages.append)
    assert again.artifact(case(Precision.INT8)).reused
    assert any(m.startswith("reused cached base model tiny_cnn") for m in messages)
    assert not any(m.startswith("training") for m in messages)


def test_corrupted_cached_onnx_is_rebuilt(tiny_cache):
    cache = tiny_cache
    Study(tiny_options(cache)).onnx("tiny_cnn")
    onnx_file = next(cache.glob("onnx/*/model.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    messages = []
    entry = Study(tiny_options(cache), report=messages.append).onnx("tiny_cnn")
    assert not entry.reused
    assert any("corrupted" in m for m in messages)
    onnx.checker.check_model(onnx.load(str(entry.path)))


def test_user_torchscript_and_onnx_files(suite, tmp_path):
    import torch

    base = suite.base_model("tiny_cnn").module
    scripted = tmp_path / "scripted_tiny.pt"
    torch.jit.save(torch.jit.script(base), str(scripted))
    exported = suite.onnx("tiny_cnn").path
    user = Study(tiny_options(tmp_path / "c", models=(str(scripted), str(exported)), file_input_size=32))
    cases = {c.id: reason for c, reason in user.cases()}
    assert cases["scripted_tiny-base-torch-cpu-b1"] is None
    assert "no PyTorch base model" in cases["model-base-torch-cpu-b1"]
    script_quality = user.quality(Case("scripted_tiny", Precision.FP32, "onnxruntime", "cpu", 1))
    assert script_quality["agreement_top1"] == 1.0
    onnx_quality = user.quality(Case("model", Precision.INT8, "onnxruntime", "cpu", 1, "minmax"))
    assert onnx_quality["reference"] == "fp32" and onnx_quality["top1"] > 0.5


def test_broken_user_files_fail_clearly(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nor is this TorchScript")
    user = Study(tiny_options(tmp_path / "c", models=(str(broken), str(junk))))
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        user.onnx("broken")
    with pytest.raises(ModelLoadError, match="does not load as TorchScript"):
        user.base_model("junk")
    with pytest.raises(ModelLoadError):  # the failure is remembered, not retried
        user.base_model("junk")


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_produce_working_int8(tmp_path, suite, method):
    other = Study(tiny_options(suite.options.cache_dir, calibrations=(method,)))
    quality = other.quality(Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, method))
    assert quality["agreement_top1"] >= 0.85, (method, quality)


def test_artifacts_of_different_models_never_share_a_cache_entry(suite, tmp_path):
    """Regression: library versions once overwrote the source hash in the artifact key."""
    import torch

    from ptqcore.models.registry import get_model_spec

    torch.manual_seed(1)
    other = tmp_path / "other_tiny.pt"
    torch.jit.save(torch.jit.script(get_model_spec("tiny_cnn").factory(10).eval()), str(other))
    both = Study(tiny_options(suite.options.cache_dir, models=("tiny", str(other)), file_input_size=32))
    for precision in (Precision.FP32, Precision.FP16, Precision.INT8):
        recipe = "minmax" if precision is Precision.INT8 else ""
        mine = both.artifact(Case("tiny_cnn", precision, "onnxruntime", "cpu", 1, recipe))
        theirs = both.artifact(Case("other_tiny", precision, "onnxruntime", "cpu", 1, recipe))
        assert mine.path != theirs.path and mine.sha256 != theirs.sha256, precision


def test_warm_up_rounds_come_before_the_first_round_of_each_kind_only(cache):
    suite = Study(tiny_options(cache))  # a session of its own: nothing warmed up yet
    warmup = suite.options.compress_warmup
    assert warmup >= 1  # the default: otherwise this test checks nothing
    assert suite.warmup_rounds(case(Precision.INT8), phase=2) == warmup
    assert suite.warmup_rounds(case(Precision.INT8, batch=4), phase=2) == 0  # another INT8 build: warm already
    assert suite.warmup_rounds(case(Precision.FP16), phase=2) == warmup  # another kind of build
    suite.phase_one_rounds(case(Precision.INT8))  # phase 1 took its warm-up here
    assert suite.warmup_rounds(case(Precision.FP16), phase=1) == 0


def test_quantization_writes_nothing_beside_the_cached_prepared_model(suite, tmp_path, monkeypatch):
    """ONNX Runtime's quantize_static writes ``<input>-inferred.onnx`` beside its input model (through
    onnx.shape_inference.infer_shapes_path): never into the cache, where runs sharing it would
    delete each other's file."""
    import onnx

    from ptqcore.build.quantize import qdq_onnx_from_onnx

    int8 = suite.int8_inputs(case(Precision.INT8))  # cached before any recording
    recipe = suite.calibration(case(Precision.INT8)).recipe
    written = []
    real = onnx.shape_inference.infer_shapes_path

    def recording(model_path, output_path="", *args, **kwargs):
        written.append(Path(output_path or model_path))
        return real(model_path, output_path, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", recording)
    qdq_onnx_from_onnx(int8.prepared_onnx, int8.ranges, recipe, tmp_path / "model.onnx")
    assert written, "quantize_static no longer infers shapes through a file: this test checks nothing"
    cache_folder = Path(int8.prepared_onnx).resolve().parent
    assert all(Path(path).resolve().parent != cache_folder for path in written), written
    assert (tmp_path / "model.onnx").stat().st_size > 0

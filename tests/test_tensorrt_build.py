"""Engine builds through fake TensorRT modules of 8.4, 8.5, 8.6, 10.3 and 11.1.

The ONNX files are real (a small CNN exported by ptqcore, prepared and calibrated by ONNX Runtime),
so the FP16 and Q/DQ files the builds derive are the real ones; only TensorRT is a fake, which
records the calls made and enforces the rules a real build would (see ``tests/fakes``).
"""

import json

import numpy as np
import onnx
import pytest
import torch
from fakes.devices import FakeCudaDevice
from fakes.tensorrt_fakes import FAKE_VERSIONS, make_tensorrt, read_plan

from ptqcore.backends.base import Int8Inputs
from ptqcore.backends.tensorrt import (
    TensorRTBackend,
    TrtBuildOptions,
    TrtDevice,
    engine_from_onnx,
    make_entropy_calibrator,
    read_build_info,
)
from ptqcore.build.export import onnx_from_torch
from ptqcore.build.quantize import QuantRecipe, calibration_ranges_from_onnx, prepared_onnx_from_onnx
from ptqcore.case import Case, Precision
from ptqcore.errors import BuildError, PtqError
from ptqcore.store import file_sha256

VERSIONS = list(FAKE_VERSIONS)
WEAK = [v for v in VERSIONS if not v.startswith("11.")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(fp32 ONNX, Int8Inputs) of a small CNN with a dynamic batch, calibrated on 16 random images."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 5),
    ).eval()
    onnx_path = onnx_from_torch(net, folder / "model.onnx", 16)
    prepared = prepared_onnx_from_onnx(onnx_path, folder / "prepared.onnx")
    images = np.random.default_rng(0).normal(size=(20, 3, 16, 16)).astype(np.float32)
    ranges = calibration_ranges_from_onnx(prepared, images, QuantRecipe(), folder / "ranges.json")
    return onnx_path, Int8Inputs(prepared, ranges, images)


def build(model, tmp_path, version, precision, **options):
    trt = make_tensorrt(version)
    onnx_path, int8 = model
    out = tmp_path / f"{version}-{precision}.engine"
    info = engine_from_onnx(onnx_path, out, precision, TrtBuildOptions(**options), int8, trt=trt, device=FakeCudaDevice(trt))
    return trt, info


@pytest.mark.parametrize("version", VERSIONS)
def test_network_flags_profile_and_verbosity_per_version(model, tmp_path, version):
    trt, info = build(model, tmp_path, version, "fp32", batch_size=8)
    expected = ("EXPLICIT_BATCH",) if version.startswith("8.") else ("STRONGLY_TYPED",) if version.startswith("11.") else ()
    assert trt.calls_named("create_network") == [("create_network", expected)]
    (profile,) = trt.calls_named("add_optimization_profile")
    assert profile[1] == {"input": ((1, 3, 16, 16), (8, 3, 16, 16), (8, 3, 16, 16))}
    assert info.profile == {"min": [1, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [8, 3, 16, 16]}
    assert ("profiling_verbosity", "DETAILED") in trt.calls
    assert trt.calls_named("set_flag") == []
    assert read_plan(info.engine_path)["precision"] == "fp32"
    assert read_build_info(info.engine_path)["network_flags"] == list(expected)


@pytest.mark.parametrize("version", WEAK)
def test_fp16_before_11_is_the_builder_flag_on_the_fp32_onnx(model, tmp_path, version):
    trt, info = build(model, tmp_path, version, "fp16")
    assert trt.calls_named("set_flag") == [("set_flag", "FP16")]
    assert info.strategy == "fp16-builder-flag" and info.network_source == model[0]
    assert read_plan(info.engine_path)["precision"] == "fp16"


def test_fp16_on_11_parses_an_fp16_onnx_with_fp32_inputs_and_outputs(model, tmp_path):
    trt, info = build(model, tmp_path, "11.1.0", "fp16")
    assert trt.calls_named("set_flag") == [] and info.strategy == "fp16-onnx" and info.strongly_typed
    assert info.network_source.name.endswith(".fp16.onnx") and info.network_source.parent == tmp_path
    fp16 = onnx.load(str(info.network_source))
    assert {t.data_type for t in fp16.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    io_types = [v.type.tensor_type.elem_type for v in list(fp16.graph.input) + list(fp16.graph.output)]
    assert io_types == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert trt.calls_named("parse")[0][1] == str(info.network_source)
    assert read_plan(info.engine_path)["precision"] == "fp16"


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_is_built_from_a_qdq_onnx_made_from_the_shared_ranges(model, tmp_path, version):
    trt, info = build(model, tmp_path, version, "int8")
    (parse,) = trt.calls_named("parse")
    assert parse[1] == str(info.network_source) and info.network_source.name.endswith(".qdq.onnx")
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= set(parse[2])
    flags = [call[1] for call in trt.calls_named("set_flag")]
    strong = version.startswith(("11.", "10.16"))  # 10.12 on: the Q/DQ path is strongly typed (weak typing deprecated)
    assert flags == ([] if strong else ["INT8", "FP16"])
    assert info.strongly_typed is strong and ("STRONGLY_TYPED" in trt.calls_named("create_network")[0][1]) is strong
    assert trt.calls_named("int8_calibrator") == []
    assert read_plan(info.engine_path)["precision"] == "int8"
    # the Q/DQ file is TensorRT's layout, quantized from the ranges ONNX Runtime's INT8 uses
    zero_points = [t for t in onnx.load(str(info.network_source)).graph.initializer if t.name.endswith("_zero_point")]
    assert zero_points and all(t.data_type == onnx.TensorProto.INT8 for t in zero_points)


def test_a_qdq_network_without_the_int8_flag_fails_like_tensorrt_8(model, tmp_path):
    trt = make_tensorrt("8.5.2.2")
    onnx_path, int8 = model
    info = engine_from_onnx(onnx_path, tmp_path / "a.engine", "int8", TrtBuildOptions(), int8, trt=trt)
    qdq = info.network_source
    with pytest.raises(BuildError, match="Q/DQ layers need the INT8 builder flag"):
        engine_from_onnx(qdq, tmp_path / "b.engine", "fp32", TrtBuildOptions(), trt=trt)


def test_workspace_limit_uses_the_memory_pool(model, tmp_path):
    trt, info = build(model, tmp_path, "8.5.2.2", "fp16", workspace_mib=512)
    assert trt.calls_named("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 512 << 20)]
    assert info.workspace_bytes == 512 << 20
    trt, info = build(model, tmp_path, "10.3.0.30", "fp16")
    assert trt.calls_named("set_memory_pool_limit") == [] and info.workspace_bytes is None


def test_timing_cache_is_created_then_reused_and_recorded(model, tmp_path):
    cache = tmp_path / "timing.cache"
    trt, first = build(model, tmp_path, "10.3.0.30", "fp32", timing_cache=cache)
    assert first.timing_cache_status == "created" and cache.read_bytes() == b"+tactics"
    assert trt.calls_named("create_timing_cache") == [("create_timing_cache", b"")]
    trt, second = build(model, tmp_path, "10.3.0.30", "fp16", timing_cache=cache)
    assert second.timing_cache_status == "reused" and trt.calls_named("create_timing_cache") == [("create_timing_cache", b"+tactics")]
    assert cache.read_bytes() == b"+tactics+tactics"
    assert read_build_info(second.engine_path)["timing_cache"] == str(cache)


def test_a_timing_cache_from_elsewhere_is_rejected_and_rebuilt(model, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OTHER-DEVICE")
    _, info = build(model, tmp_path, "10.3.0.30", "fp32", timing_cache=cache)
    assert info.timing_cache_status == "rejected, rebuilt" and cache.read_bytes() == b"+tactics"
    trt = make_tensorrt("10.3.0.30")

    def create_timing_cache(config, blob):  # the real bindings raise on a blob they cannot read
        if blob:
            raise RuntimeError("invalid timing cache")
        return trt.ITimingCache(blob)

    trt.IBuilderConfig.create_timing_cache = create_timing_cache
    cache.write_bytes(b"truncated")
    info = engine_from_onnx(model[0], tmp_path / "c.engine", "fp32", TrtBuildOptions(timing_cache=cache), trt=trt)
    assert info.timing_cache_status == "rejected, rebuilt"


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.30"])
def test_implicit_entropy_calibration_writes_then_reuses_its_cache(model, tmp_path, version):
    cache = tmp_path / "calibration.cache"
    trt, info = build(model, tmp_path, version, "int8", int8_strategy="implicit-entropy",
                      calibration_batch_size=8, calibration_cache=cache)
    assert trt.calls_named("calibrated") == [("calibrated", 2, False)]  # 20 images: 2 full batches of 8
    assert trt.calls_named("int8_calibrator") == [("int8_calibrator", "EntropyCalibrator")]
    assert trt.calls_named("set_calibration_profile")[0][1] == {"input": ((8, 3, 16, 16),) * 3}
    assert [c[1] for c in trt.calls_named("set_flag")] == ["INT8", "FP16"]
    assert info.strategy == "int8-implicit-entropy" and info.network_source == model[0]
    assert info.calibration_cache_status == "created" and cache.read_bytes() == b"TRT-FAKE-CALIBRATION-TABLE"
    trt, again = build(model, tmp_path, version, "int8", int8_strategy="implicit-entropy", calibration_cache=cache)
    assert trt.calls_named("calibrated") == [("calibrated", 0, True)] and again.calibration_cache_status == "reused"


def test_implicit_strategy_on_11_is_refused_before_any_work(model, tmp_path):
    trt = make_tensorrt("11.1.0")
    with pytest.raises(PtqError, match="removed in 11.0"):
        engine_from_onnx(model[0], tmp_path / "x.engine", "int8", TrtBuildOptions(int8_strategy="implicit-entropy"),
                         model[1], trt=trt)
    assert trt.calls == [] and not (tmp_path / "x.engine").exists()


def test_calibrator_serves_full_batches_through_device_buffers():
    trt = make_tensorrt("8.5.2.2")
    images = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    calibrator = make_entropy_calibrator(trt, images, 2, None, FakeCudaDevice(trt))
    assert calibrator.get_batch_size() == 2 and calibrator.read_calibration_cache() is None
    pointers = [calibrator.get_batch(["input"]) for _ in range(3)]
    assert pointers[2] is None and pointers[0] == pointers[1]  # one reused buffer; the fifth image is dropped
    np.testing.assert_array_equal(trt.memory[pointers[0][0]].numpy(), images[2:4])


def test_parser_errors_are_reported_with_the_parsers_messages(model, tmp_path):
    trt = make_tensorrt("10.3.0.30")
    trt.unsupported_ops = {"Gemm"}
    with pytest.raises(BuildError) as caught:
        engine_from_onnx(model[0], tmp_path / "x.engine", "fp32", trt=trt)
    assert "No importer registered for op: Gemm" in str(caught.value) and "model.onnx" in str(caught.value)
    assert "opset" in caught.value.fix


def test_an_opset_too_new_for_tensorrt_8_5_is_a_parse_error(model, tmp_path):
    newer = onnx.load(str(model[0]))
    for entry in newer.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = 18
    path = tmp_path / "opset18.onnx"
    onnx.save(newer, str(path))
    with pytest.raises(BuildError, match="opset 18 is newer than 17"):
        engine_from_onnx(path, tmp_path / "x.engine", "fp32", trt=make_tensorrt("8.5.2.2"))


def test_a_failed_build_reports_the_builders_errors(model, tmp_path):
    trt = make_tensorrt("8.6.2.3")
    trt.fail_build = "Internal Error (Could not find any implementation for node Conv_0.)"
    with pytest.raises(BuildError, match="Could not find any implementation for node Conv_0"):
        engine_from_onnx(model[0], tmp_path / "x.engine", "fp16", trt=trt)
    assert not (tmp_path / "x.engine").exists()


def test_a_build_after_a_runtime_exists_still_reports_its_own_errors(model, tmp_path):
    """TensorRT keeps the first logger while a runtime lives: a fresh logger per build would hear nothing."""
    from ptqcore.backends.tensorrt.logger import process_logger

    trt = make_tensorrt("10.3.0.30")
    runtime = trt.Runtime(process_logger(trt))  # a runner's runtime, alive while the next build runs
    built = engine_from_onnx(model[0], tmp_path / "a.engine", "fp32", trt=trt)
    trt.fail_build = "Internal Error (Could not find any implementation for node Conv_0.)"
    with pytest.raises(BuildError) as failed:
        engine_from_onnx(model[0], tmp_path / "b.engine", "fp16", trt=trt)
    assert str(failed.value).count("Could not find any implementation for node Conv_0") == 1  # this build's only
    fresh = trt.Builder(trt.Logger())  # a logger of its own (ptqcore before): TensorRT uses the held one instead
    assert fresh.logger is runtime.logger is process_logger(trt) and built.engine_path.exists()


def test_one_logger_serves_the_process_and_counts_errors_from_a_mark():
    from ptqcore.backends.tensorrt.logger import process_logger

    trt = make_tensorrt("8.5.2.2")
    logger = process_logger(trt)
    assert process_logger(trt) is logger and process_logger(make_tensorrt("8.5.2.2")) is not logger
    logger.log(trt.ILogger.Severity.ERROR, "old")
    since = logger.mark()
    logger.log(trt.ILogger.Severity.WARNING, "a warning is not an error")
    logger.log(trt.ILogger.Severity.INTERNAL_ERROR, "new")
    assert logger.errors_since(since) == ["new"] and logger.errors == ["old", "new"]


def test_int8_without_calibration_inputs_is_refused(model, tmp_path):
    with pytest.raises(BuildError, match="calibration ranges"):
        engine_from_onnx(model[0], tmp_path / "x.engine", "int8", trt=make_tensorrt("10.3.0.30"))


def test_backend_builds_per_case_with_keyed_cache_files(model, tmp_path):
    trt = make_tensorrt("10.3.0.30")
    device = TrtDevice("10.3.0.30", "Orin", "8.7")
    backend = TensorRTBackend(TrtBuildOptions(workspace_mib=256, calibration_method="minmax"), cache_dir=tmp_path / "cache",
                              trt=trt, device=FakeCudaDevice(trt), trt_device=device)
    case = Case("tiny", Precision.INT8, "tensorrt", "cuda", 4, "entropy")  # the case's method wins
    assert backend.versions() == {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7"}
    info = backend.build_engine(case, model[0], tmp_path / "model.engine", model[1])
    assert info.profile["max"][0] == 4 and info.options["calibration_method"] == "entropy"
    assert info.timing_cache.startswith(str(tmp_path / "cache" / "tensorrt" / "tensorrt-timing-cache"))
    other_gpu = TensorRTBackend(cache_dir=tmp_path / "cache", trt=trt, trt_device=TrtDevice("10.3.0.30", "Orin Nano", "8.7"))
    sha = file_sha256(model[0])
    assert other_gpu.options_for(case, sha).timing_cache != backend.options_for(case, sha).timing_cache
    inputs = backend.artifact_inputs(case, [sha, "b" * 64])
    assert inputs["gpu"] == "Orin" and inputs["options"]["batch_size"] == 4 and inputs["precision"] == "int8"
    assert json.loads(json.dumps(inputs)) == inputs


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_records_hold_no_path_into_the_build_folder(model, tmp_path, precision):
    """The store builds in a temporary folder and renames it: the record must not point into it."""
    import os
    import shutil

    building = tmp_path / ".tmp-build"
    building.mkdir()
    trt = make_tensorrt("11.1.0")
    onnx_path, int8 = model
    info = engine_from_onnx(onnx_path, building / "model.engine", precision, TrtBuildOptions(), int8,
                            trt=trt, device=FakeCudaDevice(trt))
    final = tmp_path / "entry"
    os.rename(building, final)
    details = TensorRTBackend(trt=trt).artifact_details(final / "model.engine")
    build_record = details["engine_build"]
    assert str(building) not in json.dumps(details)
    assert build_record["network_source"] == {"fp32": "fp32-onnx", "fp16": "fp16-onnx", "int8": "qdq-onnx"}[precision]
    if precision == "fp32":  # the ONNX as given lives outside the engine's folder: named by hash only
        assert build_record["network_file"] is None and build_record["network_sha256"] == file_sha256(onnx_path)
    else:  # written beside the engine, so it moved with it
        assert (final / build_record["network_file"]).is_file()
        assert build_record["network_sha256"] == file_sha256(final / build_record["network_file"])
    assert info.network_source.parent == (onnx_path.parent if precision == "fp32" else building)  # in memory: as read
    shutil.rmtree(final)


def test_an_older_build_record_with_a_path_is_reduced_to_a_name(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    (tmp_path / "model.qdq.onnx").write_bytes(b"y")
    (tmp_path / "model.engine.build.json").write_text(json.dumps(
        {"engine_path": "/gone/.tmp-1/model.engine", "network_source": "/gone/.tmp-1/model.qdq.onnx"}))
    build_record = TensorRTBackend(trt=make_tensorrt("10.3.0.30")).artifact_details(engine)["engine_build"]
    assert build_record == {"network_source": "onnx", "network_file": "model.qdq.onnx"}

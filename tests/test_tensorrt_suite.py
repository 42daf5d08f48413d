"""The suite's TensorRT path end to end, with TensorRT and the CUDA device replaced by fakes.

The fakes (``tests/fakes``) mirror TensorRT 10.3 and 11.1 and compute stand-in logits, so this
checks the plumbing the suite owns, not accuracy: which cases run, how engines are keyed (per batch
size, never shared with ONNX Runtime), that both backends quantize from the same calibration ranges,
what the records carry, and that timed rounds reuse no cache.
"""

import pytest
from fakes.devices import FakeCudaDevice
from fakes.tensorrt_fakes import make_tensorrt

import ptqcore.suite as suite_module
from ptqcore import pipeline
from ptqcore.backends import torch_base
from ptqcore.backends.tensorrt import TensorRTBackend, TrtDevice
from ptqcore.backends.torch_base import TorchCudaRunner
from ptqcore.case import Case, Precision
from ptqcore.options.suite_options import SuiteOptions
from ptqcore.study.session import Study


@pytest.fixture(params=["10.3.0.30", "11.1.0"])
def trt_suite(request, monkeypatch, tiny_cache, tiny_settings):
    version = request.param
    trt = make_tensorrt(version)
    device = FakeCudaDevice(trt)
    real_get_backend = suite_module.get_backend

    def get_backend(name, threads=0, cache_dir=None, *settings, **named):  # the suite's factory, TensorRT faked
        if name == "tensorrt":
            return TensorRTBackend(cache_dir=cache_dir, trt=trt, device=device,
                                   trt_device=TrtDevice(version, "Fake Orin", "8.7"))
        return real_get_backend(name, threads, cache_dir, *settings, **named)

    monkeypatch.setattr(suite_module, "get_backend", get_backend)
    # the PyTorch base of TensorRT cases runs on the same (fake) CUDA device
    monkeypatch.setattr(torch_base, "TorchCudaRunner", lambda model: TorchCudaRunner(model, device=device))
    # a private copy of the session's warm cache: the tiny model is trained once per session, not here
    options = SuiteOptions(models=("tiny",), backends=("onnxruntime", "tensorrt"), batch_sizes=(1, 4),
                           cache_dir=tiny_cache, telemetry=False, **tiny_settings)
    return Study(options), version


def trt_case(precision, batch):
    return Case("tiny_cnn", precision, "tensorrt", "cuda", batch, "minmax" if precision is Precision.INT8 else "")


def ort_case(precision, batch):
    return Case("tiny_cnn", precision, "onnxruntime", "cpu", batch, "minmax" if precision is Precision.INT8 else "")


def test_tensorrt_cases_run_and_engines_are_per_batch(trt_suite):
    suite, version = trt_suite
    reasons = {case.id: reason for case, reason in suite.cases()}
    assert reasons["tiny_cnn-int8-tensorrt-cuda-b4"] is None
    assert reasons["tiny_cnn-fp16-tensorrt-cuda-b1"] is None
    b1, b4 = suite.artifact(trt_case(Precision.INT8, 1)), suite.artifact(trt_case(Precision.INT8, 4))
    assert b1.path != b4.path and b1.path.suffix == ".engine"
    assert suite.artifact(ort_case(Precision.INT8, 1)).path == suite.artifact(ort_case(Precision.INT8, 4)).path
    assert suite.artifact(ort_case(Precision.INT8, 1)).path != b1.path


def test_both_backends_quantize_from_the_same_ranges(trt_suite):
    suite, _ = trt_suite
    ours, theirs = suite.int8_inputs(trt_case(Precision.INT8, 1)), suite.int8_inputs(ort_case(Precision.INT8, 1))
    assert ours.ranges == theirs.ranges and ours.prepared_onnx == theirs.prepared_onnx


def test_records_carry_engine_path_gpu_compute_and_census(trt_suite):
    suite, _ = trt_suite
    case = trt_case(Precision.INT8, 4)
    quality = suite.quality(case)
    assert quality["engine_path"] == str(suite.artifact(case).path)
    assert quality["engine_build"]["profile"] and quality["engine_build"]["timing_cache_status"] in ("created", "reused")
    assert quality["size_bytes"] > 0 and quality["reference"] == "base"
    with suite.runner(case) as runner:
        runner.infer(suite.sample_batch(case))
        assert len(runner.take_gpu_compute_ms()) == 1
        census = runner.census()
    assert census["layers_by_precision"] and "reformat_layers" in census


def test_timed_rounds_build_from_nothing(trt_suite):
    suite, _ = trt_suite
    suite.onnx("tiny_cnn", suite.export_settings("tensorrt"))  # made and cached before the round
    before = sorted(p.name for p in suite.options.cache_dir.rglob("*"))
    assert all(r.export_s > 0 for r in suite.phase_one_rounds(trt_case(Precision.FP16, 1)))
    measured = suite.compress_once(trt_case(Precision.FP16, 1))
    assert measured.build_s > 0
    assert sorted(p.name for p in suite.options.cache_dir.rglob("*")) == before


def test_a_timed_implicit_int8_round_runs_no_onnx_runtime_calibration(monkeypatch, tiny_cache, tiny_settings):
    """TensorRT's implicit calibrator works from the images alone: the timed round must not also run
    ONNX Runtime's pre-processing and the statistics pass (which inflated its build_s)."""
    from ptqcore.backends.tensorrt import TrtBuildOptions

    trt = make_tensorrt("10.3.0.30")
    device = FakeCudaDevice(trt)

    def get_backend(name, threads=0, cache_dir=None, *settings, **named):
        assert name == "tensorrt"
        return TensorRTBackend(TrtBuildOptions(int8_strategy="implicit-entropy"), cache_dir=cache_dir, trt=trt,
                               device=device, trt_device=TrtDevice("10.3.0.30", "Fake Orin", "8.7"))

    def forbidden(*args, **kwargs):
        raise AssertionError("an implicit INT8 round ran ptqcore's calibration")

    monkeypatch.setattr(suite_module, "get_backend", get_backend)
    monkeypatch.setattr(pipeline, "prepared_onnx_from_onnx", forbidden)
    monkeypatch.setattr(pipeline, "statistics_from_onnx", forbidden)
    suite = Study(SuiteOptions(models=("tiny",), backends=("tensorrt",), cache_dir=tiny_cache, telemetry=False,
                               trt_int8="implicit-entropy", **tiny_settings))
    suite.base_model("tiny_cnn")
    measured = suite.compress_once(trt_case(Precision.INT8, 1))
    assert measured.build_s > 0 and measured.calibration_s is not None and measured.calibration_s < measured.build_s

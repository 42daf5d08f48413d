"""DLA builds (``--ptq-trt-dla N``): the build asks for the DLA core with GPU fallback and records which
layers run where; boards without DLA, and fp32 cases, are skipped with the reason.

Against the fakes, whose DLA names (``DeviceType``, ``IBuilderConfig.default_device_type`` /
``DLA_core`` / ``can_run_on_DLA``, ``BuilderFlag.GPU_FALLBACK``, ``Builder.num_DLA_cores``) are checked
against the real binding wheels of 8.6 to 11.4 (tests/test_tensorrt_names.py). Which op types the
fake's DLA refuses is the fake's own rule, so what is tested is the bookkeeping, not DLA's coverage.
"""

import numpy as np
import pytest
import torch
from fakes.devices import FakeCudaDevice
from fakes.tensorrt_fakes import make_tensorrt

from ptqcore.backends.base import Int8Inputs
from ptqcore.backends.tensorrt import TensorRTBackend, TrtBuildOptions, engine_from_onnx
from ptqcore.backends.tensorrt.capabilities import TrtCapabilities
from ptqcore.backends.tensorrt.plan import plan_build
from ptqcore.build.export import onnx_from_torch
from ptqcore.build.quantize import QuantRecipe, calibration_ranges_from_onnx, prepared_onnx_from_onnx
from ptqcore.case import Case, Precision
from ptqcore.errors import PtqError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dla")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    onnx_path = onnx_from_torch(net, folder / "model.onnx", 16)
    prepared = prepared_onnx_from_onnx(onnx_path, folder / "prepared.onnx")
    images = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32)
    ranges = calibration_ranges_from_onnx(prepared, images, QuantRecipe(), folder / "ranges.json")
    return onnx_path, Int8Inputs(prepared, ranges, images)


@pytest.mark.parametrize("version, precision", [("8.5.2.2", "fp16"), ("10.3.0.30", "int8"), ("11.1.0", "int8")])
def test_a_dla_build_targets_the_core_with_gpu_fallback_and_records_the_placement(model, tmp_path, version, precision):
    trt = make_tensorrt(version)
    info = engine_from_onnx(model[0], tmp_path / "m.engine", precision, TrtBuildOptions(dla_core=1), model[1],
                            trt=trt, device=FakeCudaDevice(trt))
    assert ("default_device_type", "DLA") in trt.calls and ("DLA_core", 1) in trt.calls
    assert ("set_flag", "GPU_FALLBACK") in trt.calls and "GPU_FALLBACK" in info.builder_flags
    dla = info.as_dict()["dla"]
    assert dla["core"] == 1 and dla["layers"] == dla["on_dla"] + dla["gpu_fallback"] > 0
    assert dla["gpu_fallback"] >= 1 and any(name.startswith(("Gemm", "Flatten", "GlobalAveragePool"))
                                            for name in dla["gpu_fallback_layers"])
    assert info.options["dla_core"] == 1  # part of the engine's key: a DLA engine is never a GPU one's cache hit


def test_a_gpu_build_has_no_dla_placement(model, tmp_path):
    trt = make_tensorrt("10.3.0.30")
    info = engine_from_onnx(model[0], tmp_path / "g.engine", "fp16", TrtBuildOptions(), model[1], trt=trt,
                            device=FakeCudaDevice(trt))
    assert info.dla is None and not trt.calls_named("DLA_core")


def test_boards_without_dla_and_fp32_cases_are_skipped_with_the_reason():
    trt = make_tensorrt("10.3.0.30")
    backend = TensorRTBackend(TrtBuildOptions(dla_core=0), trt=trt, device=FakeCudaDevice(trt))
    int8 = Case("m", Precision.INT8, "tensorrt", "cuda", 1, "entropy")
    assert backend.unsupported_reason(int8).startswith("this board has 0 DLA core(s): --ptq-trt-dla 0 needs one")
    trt.dla_cores = 2  # an AGX Orin
    backend = TensorRTBackend(TrtBuildOptions(dla_core=0), trt=trt, device=FakeCudaDevice(trt))
    assert backend.unsupported_reason(int8) is None
    fp32 = Case("m", Precision.FP32, "tensorrt", "cuda", 1)
    assert backend.unsupported_reason(fp32) == "DLA runs FP16 and INT8 engines only, not fp32"
    assert TensorRTBackend(TrtBuildOptions(dla_core=2), trt=trt).unsupported_reason(int8).startswith(
        "this board has 2 DLA core(s): --ptq-trt-dla 2")
    with pytest.raises(PtqError, match="DLA runs FP16 and INT8 engines only"):
        plan_build(TrtCapabilities.from_module(trt), "fp32", TrtBuildOptions(dla_core=0))
    with pytest.raises(ValueError, match="dla_core must be >= 0"):
        TrtBuildOptions(dla_core=-1)

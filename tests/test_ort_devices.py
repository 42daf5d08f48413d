"""ONNX Runtime's devices: a GPU device needs its execution provider, and a session ONNX Runtime
quietly puts on the CPU for it is an error (real onnxruntime here: the CPU build, whose
``InferenceSession`` warns and falls back when asked for ``CUDAExecutionProvider``)."""

import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from ptqcore.backends import get_backend
from ptqcore.backends.onnxruntime import ORT_DEVICES, OnnxRuntimeBackend, OrtRunner
from ptqcore.case import Case, Precision
from ptqcore.errors import BuildError


@pytest.fixture
def relu(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


CPU_BUILD = pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(),
                               reason="this onnxruntime has the CUDA execution provider: nothing falls back here")


@CPU_BUILD
def test_a_gpu_device_without_its_provider_is_skipped_with_the_reason():
    reason = get_backend("onnxruntime", ort_device="cuda").unavailable_reason()
    assert reason.startswith(f"this onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider")
    assert "needs onnxruntime-gpu" in reason and OnnxRuntimeBackend().unavailable_reason() is None


@CPU_BUILD
def test_a_session_that_fell_back_to_the_cpu_is_an_error_not_a_cpu_figure(relu):
    runner = OrtRunner(relu, providers=ORT_DEVICES["cuda"])
    with pytest.raises(BuildError, match="put relu.onnx on CPUExecutionProvider although CUDAExecutionProvider"):
        with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # what ONNX Runtime itself only warns
            runner.activate()
    assert runner.session is None


def test_the_cpu_device_runs_and_records_its_providers(relu):
    backend = OnnxRuntimeBackend(device="cpu")
    case = Case("m", Precision.FP32, "onnxruntime", "cpu", 1)
    with backend.runner(case, relu) as runner:
        assert runner.session.get_providers() == ["CPUExecutionProvider"]
    assert backend.artifact_details(relu) == {"ort_providers": ["CPUExecutionProvider"]}


def test_gpu_devices_quantize_symmetric_s8s8_and_name_their_device():
    case = Case("m", Precision.INT8, "onnxruntime", "cuda", 1, "entropy")
    for device in ("cuda", "tensorrt"):
        backend = OnnxRuntimeBackend(int8_layout="u8s8-reduce-range", device=device)
        assert backend.device == "cuda" and backend.int8_recipe(case).layout == "s8s8-symmetric"
        assert backend.artifact_details(None)["ort_providers"][0] == ORT_DEVICES[device][0]
    assert OnnxRuntimeBackend(int8_layout="u8s8").int8_recipe(case).layout == "u8s8"
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, tensorrt"):
        OnnxRuntimeBackend(device="gpu")

"""The GPU runners, driven through fake TensorRT modules and a CPU stand-in for the CUDA device.

What is checked is what the runners do, not GPU timing: which execute API each version gets,
that buffers are the device tensors' addresses, that ``infer`` copies in, executes, copies out and
synchronizes, chunking of large batches, one ``gpu_compute_ms`` figure per execute, CUDA-graph
capture after warm-up, and that the base model runs on a copy.
"""

import json

import numpy as np
import pytest
import torch
from fakes.devices import FakeCudaDevice
from fakes.tensorrt_fakes import FAKE_VERSIONS, make_tensorrt

from ptqcore.backends.tensorrt import TrtBuildOptions, TrtRunner, engine_from_onnx
from ptqcore.backends.torch_base import TorchCudaRunner, TorchRunner
from ptqcore.build.export import onnx_from_torch
from ptqcore.errors import BuildError

CLASSES = 5


def expected_logits(batch):
    """What the fake execution context computes: mean(input[n]) * (c + 1)."""
    return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True) * np.arange(1, CLASSES + 1, dtype=np.float32)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, CLASSES)).eval()
    return onnx_from_torch(net, tmp_path_factory.mktemp("onnx") / "model.onnx", 8)


def engine(onnx_model, tmp_path, version, batch_size=4):
    trt = make_tensorrt(version)
    info = engine_from_onnx(onnx_model, tmp_path / "model.engine", "fp16", TrtBuildOptions(batch_size=batch_size), trt=trt)
    trt.calls.clear()
    return trt, info.engine_path


def images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("version", FAKE_VERSIONS)
def test_each_version_runs_through_its_execute_api_on_the_runners_stream(onnx_model, tmp_path, version):
    trt, path = engine(onnx_model, tmp_path, version)
    device = FakeCudaDevice(trt)
    with TrtRunner(path, trt=trt, device=device) as runner:
        batch = images(4)
        np.testing.assert_allclose(runner.infer(batch), expected_logits(batch), rtol=1e-5, atol=1e-6)
        stream = runner._stream.cuda_stream
    if version == "8.4.1.5":
        (call,) = trt.calls_named("execute_async_v2")
        assert call[2] == stream and all(call[1]) and trt.calls_named("set_binding_shape")
        assert set(call[1]) <= set(trt.memory)  # the bindings are the device tensors' addresses
    else:
        assert trt.calls_named("execute_async_v3") == [("execute_async_v3", stream)]
        assert trt.calls_named("execute_async_v2") == []
        addresses = {name: address for _, name, address in trt.calls_named("set_tensor_address")}
        assert set(addresses) == {"input", "logits"} and set(addresses.values()) <= set(trt.memory)
    assert device.calls["synchronize"] == 2 and device.calls["release"] == 1  # after the input copy, at the end


@pytest.mark.parametrize("version", ["8.4.1.5", "10.3.0.30"])
def test_the_timed_interval_is_trtexecs_expose_dma_interval(onnx_model, tmp_path, version):
    """synchronize(H2D) -> start event -> enqueue -> end event, then the copy back and a synchronize."""
    trt, path = engine(onnx_model, tmp_path, version)
    device = FakeCudaDevice(trt)
    execute = "execute_async_v2" if version == "8.4.1.5" else "execute_async_v3"
    with TrtRunner(path, trt=trt, device=device) as runner:
        device.timeline.clear()
        runner.infer(images(4))
    assert device.timeline == ["to_device", "synchronize", "start", execute, "end", "to_host", "synchronize"]


def test_cuda_graph_capture_follows_a_synchronized_run_and_replays_inside_the_events(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "11.1.0")
    device = FakeCudaDevice(trt)
    with TrtRunner(path, cuda_graph=True, graph_warmup=1, trt=trt, device=device) as runner:
        assert runner.graph_status() == {"cuda_graph": False, "cuda_graph_reason": "not captured yet (graph_warmup=1)"}
        runner.infer(images(4))
        runner.infer(images(4))
        status = runner.census()
    timeline = device.timeline[device.timeline.index("to_device"):]
    assert timeline == [
        "to_device", "synchronize", "start", "execute_async_v3", "end", "to_host", "synchronize",  # warm-up run
        "begin_capture", "execute_async_v3", "end_capture",  # captured after that run's synchronize
        "to_device", "synchronize", "start", "replay", "end", "to_host", "synchronize",  # the replay runs the captured work
    ]
    assert status["cuda_graph"] is True and status["cuda_graph_reason"] is None


def test_a_failing_capture_falls_back_to_plain_enqueue_and_says_so(onnx_model, tmp_path, caplog):
    trt, path = engine(onnx_model, tmp_path, "10.3.0.30")
    trt.fail_capture = "operation not permitted when stream is capturing"
    device = FakeCudaDevice(trt)
    with TrtRunner(path, cuda_graph=True, graph_warmup=1, trt=trt, device=device) as runner:
        outputs = [runner.infer(images(4, seed=i)) for i in range(4)]  # no BuildError, no masked error
        for i, out in enumerate(outputs):
            np.testing.assert_allclose(out, expected_logits(images(4, seed=i)), rtol=1e-5, atol=1e-6)
        status = runner.graph_status()
        census = runner.census()
    assert status["cuda_graph"] is False
    assert "capture failed, ran without CUDA graphs" in status["cuda_graph_reason"]
    assert "not permitted when stream is capturing" in status["cuda_graph_reason"]
    assert "cudaErrorStreamCaptureInvalidated" in status["cuda_graph_reason"]  # the error was cleared
    assert census["cuda_graph"] is False and census["cuda_graph_reason"] == status["cuda_graph_reason"]
    assert device.calls["capture"] == 1 and device.calls["clear_error"] == 1  # tried once, not per call
    assert device.pending_error is None and trt.capturing is None
    timeline = device.timeline
    failed = timeline.index("begin_capture")
    assert timeline[failed:failed + 4] == ["begin_capture", "execute_async_v3", "end_capture", "clear_error"]
    assert "replay" not in timeline and timeline.count("execute_async_v3") == 5  # 4 plain runs + the failed capture
    assert "running without CUDA graphs" in caplog.text


def test_graph_warm_up_must_be_at_least_one_run():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="graph_warmup must be >= 1"):
            TrtRunner("x.engine", cuda_graph=True, graph_warmup=bad)
    assert TrtRunner("x.engine").graph_status() == {"cuda_graph": False, "cuda_graph_reason": "not requested"}


def test_buffers_are_allocated_once_for_the_largest_profile_shape(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "10.3.0.30", batch_size=4)
    device = FakeCudaDevice(trt)
    with TrtRunner(path, trt=trt, device=device) as runner:
        assert device.calls["empty"] == 2 and device.calls["pinned"] == 2  # input and output, device and host
        assert [tuple(t.device.shape) for t in runner._tensors] == [(4, 3, 8, 8), (4, CLASSES)]
        for n in (1, 3, 4, 2):
            batch = images(n, seed=n)
            np.testing.assert_allclose(runner.infer(batch), expected_logits(batch), rtol=1e-5, atol=1e-6)
        assert device.calls["empty"] == 2
    shapes = [call[2] for call in trt.calls_named("set_input_shape")]
    assert shapes == [(4, 3, 8, 8), (1, 3, 8, 8), (3, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)]
    assert runner.engine is None and runner._tensors[0].device is None


def test_batches_larger_than_the_profile_run_in_chunks(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "8.5.2.2", batch_size=4)
    with TrtRunner(path, trt=trt, device=FakeCudaDevice(trt)) as runner:
        runner.take_gpu_compute_ms()
        batch = images(10)
        np.testing.assert_allclose(runner.infer(batch), expected_logits(batch), rtol=1e-5, atol=1e-6)
        assert len(runner.gpu_compute_ms) == 3  # 4 + 4 + 2
    assert len(trt.calls_named("execute_async_v3")) == 3


def test_gpu_compute_time_is_one_figure_per_inference_and_can_be_taken(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "11.1.0")
    with TrtRunner(path, trt=trt, device=FakeCudaDevice(trt)) as runner:
        assert runner.gpu_compute_ms == []
        for _ in range(5):
            runner.infer(images(4))
        taken = runner.take_gpu_compute_ms()
        assert len(taken) == 5 and all(ms >= 0 for ms in taken)
        assert runner.gpu_compute_ms == [] and runner.take_gpu_compute_ms() == []
        runner.infer(images(4))
        assert len(runner.gpu_compute_ms) == 1


def test_cuda_graph_mode_captures_after_warm_up_and_replays(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "10.3.0.30")
    device = FakeCudaDevice(trt)
    with TrtRunner(path, cuda_graph=True, graph_warmup=2, trt=trt, device=device) as runner:
        outputs = [runner.infer(images(4, seed=i)) for i in range(5)]
        for i, out in enumerate(outputs):
            np.testing.assert_allclose(out, expected_logits(images(4, seed=i)), rtol=1e-5, atol=1e-6)
        (graph,) = device.graphs
        assert graph.replays == 3 and device.calls["capture"] == 1
        runner.infer(images(2))  # a new shape drops the graph; it is captured again after warm-up
        assert runner._graph is None
    # 2 warm-up executions + 1 captured (run at each replay) + 1 after the shape change
    assert len(trt.calls_named("execute_async_v3")) == 4


def test_an_engine_from_another_version_is_refused_with_the_reason(onnx_model, tmp_path):
    _, path = engine(onnx_model, tmp_path, "8.6.2.3")
    other = make_tensorrt("10.3.0.30")
    with pytest.raises(BuildError, match="could not load the engine") as caught:
        TrtRunner(path, trt=other, device=FakeCudaDevice(other)).activate()
    assert "rebuild" in caught.value.fix


def test_census_of_the_running_engine(onnx_model, tmp_path):
    trt, path = engine(onnx_model, tmp_path, "8.5.2.2")
    with TrtRunner(path, trt=trt, device=FakeCudaDevice(trt)) as runner:
        runner.infer(np.zeros((2, 3, 8, 8), np.float32))
        census = runner.census()
    assert census["layers_by_precision"] == {"Half": 2, "Float": 1} and census["reformat_layers"] == 1
    assert census["engine_input_shape"] == {runner._input.name: [2, 3, 8, 8]}
    assert (census["cuda_graph"], census["cuda_graph_reason"]) == (False, "not requested")


def test_the_gpu_base_runs_a_copy_of_the_model_and_matches_the_cpu_base():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, CLASSES)).eval()
    device = FakeCudaDevice()
    batch = images(3)
    with TorchRunner(model) as cpu, TorchCudaRunner(model, device=device) as gpu:
        np.testing.assert_allclose(gpu.infer(batch), cpu.infer(batch), rtol=1e-5, atol=1e-6)
        assert gpu._module is not model and device.calls["module_copy"] == 1
        gpu.infer(batch)
        assert len(gpu.take_gpu_compute_ms()) == 2 and gpu.gpu_compute_ms == []
    assert device.calls["synchronize"] == 4 and device.calls["release"] == 1 and gpu._module is None
    # each call: the input copy is synchronized before the start event, the output after the end event
    assert device.timeline == ["synchronize", "start", "end", "synchronize"] * 2


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.30", "11.1.0"])
def test_the_layer_profiler_reports_each_engine_layer_per_call_outside_cuda_graphs(onnx_model, tmp_path, version):
    from ptqcore.backends.tensorrt.profiler import inspector_layers

    trt, path = engine(onnx_model, tmp_path, version)
    trt.layer_ms = lambda index, name: 0.5 if name.startswith("Reformatting") else 0.1 * (index + 1)
    with TrtRunner(path, cuda_graph=True, trt=trt, device=FakeCudaDevice(trt)) as runner:
        for _ in range(4):
            runner.infer(images(4))  # captured and replayed from here on
        profile = runner.profile_layers(images(4), calls=6, warmup=2, quantized=False)
        assert runner.cuda_graph and runner.take_gpu_compute_ms() == []  # graphs allowed again; no stray compute times
        runner.infer(images(4))
        assert runner.graph_status()["cuda_graph"]
    names = list(inspector_layers(trt.EngineInspector(trt.ICudaEngine(json.loads(
        path.read_bytes().split(b"\n", 1)[1]))).get_engine_information(trt.LayerInformationFormat.JSON)))
    assert profile.calls == 6 and {layer.layer for layer in profile.layers} == set(names)
    reformat = [layer for layer in profile.layers if layer.category == "reformat"]
    assert len(reformat) == 1 and reformat[0].median_ms == pytest.approx(0.5) and reformat[0].precision == "fp32"
    assert profile.total_ms == pytest.approx(0.5 + sum(0.1 * (i + 1) for i in range(1, len(names))))
    assert all(layer.provider == "TensorRT" and len(layer.times_ms) == 6 for layer in profile.layers)

"""Running engines: :class:`TrtRunner` (torch-owned CUDA buffers, a dedicated stream, optional CUDA
graphs) and :func:`engine_io_shapes`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ptqcore.backends.cuda import CudaDevice, GpuRunner, GpuTimer, capture_graph
from ptqcore.backends.tensorrt.capabilities import INSTALL_HINT, TrtCapabilities, import_tensorrt
from ptqcore.backends.tensorrt.census import engine_census, engine_information
from ptqcore.backends.tensorrt.logger import NO_ERROR_LOGGED, process_logger
from ptqcore.errors import BuildError

_log = logging.getLogger(__name__)


# -- running -----------------------------------------------------------------------------------------
@dataclass
class _Tensor:
    """One engine input or output and, once the runner is active, its buffers."""

    name: str
    index: int
    is_input: bool
    dtype: np.dtype
    shape: Tuple[int, ...]
    profile: Optional[Tuple[Tuple[int, ...], ...]] = None  # (min, opt, max) of a dynamic input
    max_shape: Tuple[int, ...] = ()
    device: object = None
    host: object = None


def _engine_tensors(engine, trt, caps: TrtCapabilities) -> List[_Tensor]:
    tensors = []
    if caps.has_io_tensor_api:
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dynamic = is_input and any(d < 0 for d in shape)
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0)) if dynamic else None
            tensors.append(_Tensor(name, index, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape, profile))
    else:
        for index in range(engine.num_bindings):
            is_input = bool(engine.binding_is_input(index))
            shape = tuple(int(d) for d in engine.get_binding_shape(index))
            dynamic = is_input and any(d < 0 for d in shape)
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_profile_shape(0, index)) if dynamic else None
            tensors.append(_Tensor(engine.get_binding_name(index), index, is_input,
                                   np.dtype(trt.nptype(engine.get_binding_dtype(index))), shape, profile))
    for tensor in tensors:
        tensor.max_shape = tensor.profile[2] if tensor.profile else tensor.shape
    return tensors


def _load_engine(trt, logger, engine_path: Path):
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise BuildError(
            f"TensorRT {trt.__version__} could not load the engine {engine_path}",
            "an engine runs only on the TensorRT version and GPU that built it: rebuild it here "
            "(ptqcore's cache keys engines by both)",
        )
    return runtime, engine


def engine_io_shapes(engine_path: Path, trt=None) -> Dict[str, dict]:
    """Name -> ``{"input": bool, "shape": [...], "profile": [min, opt, max] or None}`` of an engine file."""
    trt = trt or import_tensorrt()
    _runtime, engine = _load_engine(trt, process_logger(trt), engine_path)
    return {
        t.name: {"input": t.is_input, "shape": list(t.shape), "profile": [list(s) for s in t.profile] if t.profile else None}
        for t in _engine_tensors(engine, trt, TrtCapabilities.from_module(trt))
    }


class TrtRunner(GpuRunner):
    """Runs a serialized engine on one CUDA device (see :class:`~ptqcore.backends.cuda.GpuRunner`).

    ``activate`` loads the engine and allocates, for the profile's largest shape, one device buffer
    per input and output (torch CUDA tensors: their ``data_ptr()`` is what TensorRT gets) and one
    pinned host buffer each, on a dedicated stream. ``infer(batch)`` copies the batch host->device
    and synchronizes, records the start event, launches (``execute_async_v3`` with tensor
    addresses where the version has it, else the bindings API ``execute_async_v2``, or the graph's
    replay), records the end event, copies the first output device->host and synchronizes: so it is
    end to end, and ``gpu_compute_ms`` is exactly trtexec's GPU Compute Time interval under
    ``--exposeDMA`` (see :mod:`ptqcore.backends.cuda`). A batch larger than the profile's maximum
    runs in chunks (one ``gpu_compute_ms`` figure per chunk).

    ``cuda_graph``: after ``graph_warmup`` (>= 1: at least one enqueue and a synchronize, as
    trtexec does before it captures) inferences at one shape the launch is captured into a CUDA
    graph and replayed from then on (recaptured when the shape changes). When the enqueue fails
    under capture, the capture is ended, the CUDA error cleared, and this runner enqueues without
    graphs from then on; :meth:`graph_status` says whether graphs are in use and why not.
    ``trt`` and ``device`` replace the ``tensorrt`` module and :class:`CudaDevice` (tests).
    """

    def __init__(self, engine_path: Path, cuda_graph: bool = False, graph_warmup: int = 3,
                 device_index: int = 0, trt=None, device=None) -> None:
        if int(graph_warmup) < 1:
            raise ValueError(
                f"graph_warmup must be >= 1, got {graph_warmup}: the work must run and the stream be "
                "synchronized once before capture, or TensorRT's lazy initialisation is captured (trtexec does the same)"
            )
        self.engine_path = Path(engine_path)
        self.cuda_graph = cuda_graph
        self.graph_warmup = int(graph_warmup)
        self.device_index = device_index
        self._trt = trt
        self._device = device
        self.engine = self.context = None
        self._graph = None
        self._graph_failure: Optional[str] = None
        self._last_was_replay = False

    # -- lifecycle ------------------------------------------------------------------------------
    def activate(self) -> None:
        trt = self._trt = self._trt or import_tensorrt()
        caps = TrtCapabilities.from_module(trt)
        if not (caps.has_v3_execution or caps.has_bindings_api):
            raise BuildError(f"TensorRT {trt.__version__} has neither execute_async_v3 nor execute_async_v2", INSTALL_HINT)
        self._v3 = caps.has_v3_execution and caps.has_io_tensor_api
        device = self._device = self._device or CudaDevice(self.device_index)
        self._logger = process_logger(trt)
        self._runtime, self.engine = _load_engine(trt, self._logger, self.engine_path)
        self.context = self.engine.create_execution_context()
        self._stream = device.new_stream()
        self._timer = GpuTimer(device)
        tensors = _engine_tensors(self.engine, trt, caps)
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise BuildError(f"{self.engine_path} has {len(inputs)} inputs", "give a classifier with one image input")
        self._input, self._outputs = inputs[0], [t for t in tensors if not t.is_input]
        self._set_shape(self._input.max_shape)
        for tensor in self._outputs:
            tensor.max_shape = self._context_shape(tensor)
        self._bindings = [0] * len(tensors)
        for tensor in tensors:
            tensor.device = device.empty(tensor.max_shape, tensor.dtype)
            tensor.host = device.pinned(tensor.max_shape, tensor.dtype)
            address = int(tensor.device.data_ptr())
            if self._v3:
                self.context.set_tensor_address(tensor.name, address)
            self._bindings[tensor.index] = address
        self._tensors = tensors

    def deactivate(self) -> None:
        self._graph = None
        for tensor in getattr(self, "_tensors", []):
            tensor.device = tensor.host = None
        self.context = None
        self.engine = None
        self._runtime = None
        if self._device is not None and getattr(self, "_stream", None) is not None:
            self._stream = None
            self._device.release()

    def graph_status(self) -> dict:
        """``{"cuda_graph": bool, "cuda_graph_reason": str or None}``.

        ``cuda_graph`` is True only when graphs were asked for, captured, and the last inference
        replayed one. Otherwise ``cuda_graph_reason`` says why not: ``"not requested"``, the
        capture failure (this runner then ran without graphs, as trtexec does), or
        ``"not captured yet"`` (fewer than ``graph_warmup`` inferences at the current shape).
        """
        if not self.cuda_graph:
            return {"cuda_graph": False, "cuda_graph_reason": "not requested"}
        if self._graph_failure is not None:
            return {"cuda_graph": False,
                    "cuda_graph_reason": f"capture failed, ran without CUDA graphs: {self._graph_failure}"}
        if self._graph is None or not self._last_was_replay:
            return {"cuda_graph": False, "cuda_graph_reason": f"not captured yet (graph_warmup={self.graph_warmup})"}
        return {"cuda_graph": True, "cuda_graph_reason": None}

    has_census = True

    def census(self) -> Optional[dict]:
        """:func:`engine_census` of the loaded engine (call while active), with :meth:`graph_status`
        merged in (``cuda_graph``, ``cuda_graph_reason``) and the input shape it ran at
        (``engine_input_shape``, what ``scripts/accept_tensorrt.py`` gives trtexec), so the record
        says how it was run."""
        census = engine_census(self.engine, self._trt)
        shape = {"engine_input_shape": {self._input.name: [int(d) for d in self._shape]}}
        return {**(census or {}), **self.graph_status(), **shape}

    has_layer_profiler = True

    def profile_layers(self, batch: np.ndarray, calls: int, warmup: int, quantized: bool, graph=None):
        """TensorRT's per-layer times (:mod:`ptqcore.backends.tensorrt.profiler`) of ``calls``
        inferences after ``warmup``, without CUDA graphs (a replay reports no layer); the profiler is
        set on this context for the profiled calls only, and graphs are allowed again afterwards."""
        from ptqcore.backends.tensorrt.profiler import inspector_layers, layer_collector, profile_from_reports

        trt = self._trt
        collector = layer_collector(trt)
        graphs, self.cuda_graph, self._graph = self.cuda_graph, False, None
        self.context.profiler = collector
        try:
            for _ in range(warmup):
                self.infer(batch)
            collector.take()
            per_call = []
            for _ in range(calls):
                self.infer(batch)
                per_call.append(collector.take())
        finally:
            self.cuda_graph = graphs
        if self.times_gpu_compute:
            self.take_gpu_compute_ms()  # the profiled calls' compute times are not latency figures
        text = engine_information(self.engine, trt)
        return profile_from_reports(per_call, inspector_layers(text) if text is not None else {}, graph, quantized)

    # -- inference ------------------------------------------------------------------------------
    def _set_shape(self, shape: Tuple[int, ...]) -> None:
        if self._v3:
            accepted = self.context.set_input_shape(self._input.name, tuple(shape))
        else:
            accepted = self.context.set_binding_shape(self._input.index, tuple(shape))
        if accepted is False:
            raise BuildError(f"the engine {self.engine_path.name} does not accept input shape {tuple(shape)}",
                             f"its profile is {self._input.profile}")
        self._shape = tuple(shape)
        self._output_shape = self._context_shape(self._outputs[0])
        self._graph = None
        self._last_was_replay = False
        self._runs_at_shape = 0

    def _context_shape(self, tensor: _Tensor) -> Tuple[int, ...]:
        if self._v3:
            return tuple(int(d) for d in self.context.get_tensor_shape(tensor.name))
        return tuple(int(d) for d in self.context.get_binding_shape(tensor.index))

    def _try_enqueue(self) -> Optional[str]:
        """Queue one execution on the runner's stream: None, or TensorRT's reason it failed."""
        handle = self._device.stream_handle(self._stream)
        since = self._logger.mark()
        if self._v3:
            done = self.context.execute_async_v3(handle)
        else:
            done = self.context.execute_async_v2(self._bindings, handle)
        if done:
            return None
        return f"TensorRT failed to run {self.engine_path.name}: " + (
            " | ".join(self._logger.errors_since(since)) or NO_ERROR_LOGGED)

    def _enqueue(self) -> None:
        failure = self._try_enqueue()
        if failure is not None:
            raise BuildError(failure, "read TensorRT's messages above")

    def _capture(self) -> None:
        """Capture the enqueue (called after >= 1 inference, which ended with a synchronize, at
        this shape); on failure keep running without graphs and remember why."""
        graph, failure = capture_graph(self._device, self._stream, self._try_enqueue)
        if failure is not None:
            self._graph_failure = failure
            _log.warning("CUDA graph capture of %s failed; running without CUDA graphs: %s",
                         self.engine_path.name, failure)
        self._graph = graph

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.ascontiguousarray(batch, dtype=self._input.dtype)
        limit = self._input.max_shape[0]
        if batch.shape[0] > limit:
            return np.concatenate([self.infer(batch[i : i + limit]) for i in range(0, batch.shape[0], limit)])
        if batch.shape != self._shape:
            self._set_shape(batch.shape)
        if (self.cuda_graph and self._graph is None and self._graph_failure is None
                and self._runs_at_shape >= self.graph_warmup):
            self._capture()
        device = self._device
        output = self._outputs[0]
        size = int(np.prod(self._output_shape))
        host_in = self._input.host.view(-1)[: batch.size].view(batch.shape)
        device_in = self._input.device.view(-1)[: batch.size].view(batch.shape)
        host_out = output.host.view(-1)[:size].view(self._output_shape)
        device_out = output.device.view(-1)[:size].view(self._output_shape)
        host_in.copy_(torch.from_numpy(batch))
        with device.on(self._stream):
            device.to_device(device_in, host_in)
        device.synchronize(self._stream)  # the input is on the GPU before the start event (trtexec --exposeDMA)
        with device.on(self._stream):
            with self._timer.region(self._stream):
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._enqueue()
            device.to_host(host_out, device_out)
        device.synchronize(self._stream)
        self._timer.collect()
        self._last_was_replay = self._graph is not None
        self._runs_at_shape += 1
        return host_out.numpy().copy()

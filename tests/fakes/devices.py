"""A CPU stand-in for :class:`ptqcore.backends.cuda.CudaDevice`, so GPU runners can be driven here.

Buffers are CPU torch tensors, registered by ``data_ptr()`` in the fake TensorRT module's
``memory`` (so a fake execution context can find them by address, as TensorRT does); streams are
numbered handles; an event pair's elapsed time is the host time between the two ``record`` calls;
a CUDA graph records the fake context's work while captured and runs it at ``replay``. Every call
is counted in ``calls``, and ``timeline`` lists, in order, the copies (``to_device``, ``to_host``),
``synchronize``, the event records (``start``, ``end``), graph capture steps (``begin_capture``,
``end_capture``, ``clear_error``, ``replay``) and the fake TensorRT module's execute calls, so a
test can check what happens before what.

A capture fails the way CUDA's does when the fake module's ``fail_capture`` is set: the enqueue
returns False, ``end_capture`` raises (the capture was invalidated) and a CUDA error stays pending
until ``clear_error`` reads it.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections import Counter

import numpy as np
import torch


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.cuda_stream = handle


class FakeEvent:
    def __init__(self, name: str = "event", timeline=None) -> None:
        self.at = None
        self.name = name
        self.timeline = timeline

    def record(self, stream=None) -> None:
        self.at = time.perf_counter()
        if self.timeline is not None:
            self.timeline.append(self.name)

    def elapsed_time(self, end: "FakeEvent") -> float:
        return (end.at - self.at) * 1000.0


class FakeGraph:
    def __init__(self, timeline=None) -> None:
        self.steps = []
        self.replays = 0
        self.invalidated = False
        self.timeline = timeline

    def replay(self) -> None:
        assert not self.invalidated, "an invalidated capture must never be replayed"
        if self.timeline is not None:
            self.timeline.append("replay")
        self.replays += 1
        for step in self.steps:
            step()


class FakeCudaDevice:
    """See the module docstring; ``trt`` is the fake tensorrt module whose ``memory`` it fills."""

    torch_device = torch.device("cpu")

    def __init__(self, trt=None) -> None:
        self.trt = trt
        self.calls = Counter()
        self.graphs = []
        self.timeline = []
        self.pending_error = None
        self._handles = itertools.count(0x5000)
        if trt is not None:
            trt.timeline = self.timeline

    def new_stream(self) -> FakeStream:
        self.calls["new_stream"] += 1
        return FakeStream(next(self._handles))

    @staticmethod
    def stream_handle(stream) -> int:
        return stream.cuda_stream

    def on(self, stream):
        self.calls["on"] += 1
        return contextlib.nullcontext()

    def empty(self, shape, dtype):
        self.calls["empty"] += 1
        tensor = torch.from_numpy(np.zeros(tuple(shape), dtype=np.dtype(dtype)))
        if self.trt is not None:
            self.trt.memory[int(tensor.data_ptr())] = tensor
        return tensor

    def pinned(self, shape, dtype):
        self.calls["pinned"] += 1
        return torch.from_numpy(np.zeros(tuple(shape), dtype=np.dtype(dtype)))

    def event_pair(self):
        return FakeEvent("start", self.timeline), FakeEvent("end", self.timeline)

    def synchronize(self, stream) -> None:
        self.calls["synchronize"] += 1
        self.timeline.append("synchronize")

    def to_device(self, device_tensor, host_tensor) -> None:
        self.calls["to_device"] += 1
        self.timeline.append("to_device")
        device_tensor.copy_(host_tensor)

    def to_host(self, host_tensor, device_tensor) -> None:
        self.calls["to_host"] += 1
        self.timeline.append("to_host")
        host_tensor.copy_(device_tensor)

    def module_copy(self, module):
        self.calls["module_copy"] += 1
        return copy.deepcopy(module)

    def new_graph(self) -> FakeGraph:
        graph = FakeGraph(self.timeline)
        self.graphs.append(graph)
        return graph

    def begin_capture(self, graph: FakeGraph, stream):
        self.calls["capture"] += 1
        self.timeline.append("begin_capture")
        assert self.trt.capturing is None, "captures do not nest"
        self.trt.capturing = graph
        return graph

    def end_capture(self, graph: FakeGraph) -> None:
        self.timeline.append("end_capture")
        self.trt.capturing = None
        if graph.invalidated:
            self.pending_error = "cudaErrorStreamCaptureInvalidated"
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    def clear_error(self):
        self.calls["clear_error"] += 1
        self.timeline.append("clear_error")
        error, self.pending_error = self.pending_error, None
        return error

    def release(self) -> None:
        self.calls["release"] += 1

"""A CPU stand-in for :class:`ptqcore.backends.cuda.CudaDevice`, so GPU runners can be driven here.

Buffers are CPU torch tensors, registered by ``data_ptr()`` in the fake TensorRT module's
``memory`` (so a fake execution context can find them by address, as TensorRT does); streams are
numbered handles; an event pair's elapsed time is the host time between the two ``record`` calls;
a CUDA graph records the fake context's work while captured and runs it at ``replay``. Every call
is counted in ``calls``.
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
    def __init__(self) -> None:
        self.at = None

    def record(self, stream=None) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: "FakeEvent") -> float:
        return (end.at - self.at) * 1000.0


class FakeGraph:
    def __init__(self) -> None:
        self.steps = []
        self.replays = 0

    def replay(self) -> None:
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
        self._handles = itertools.count(0x5000)

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
        return FakeEvent(), FakeEvent()

    def synchronize(self, stream) -> None:
        self.calls["synchronize"] += 1

    def module_copy(self, module):
        self.calls["module_copy"] += 1
        return copy.deepcopy(module)

    def new_graph(self) -> FakeGraph:
        graph = FakeGraph()
        self.graphs.append(graph)
        return graph

    @contextlib.contextmanager
    def capture(self, graph: FakeGraph, stream):
        self.calls["capture"] += 1
        self.trt.capturing = graph
        try:
            yield
        finally:
            self.trt.capturing = None

    def release(self) -> None:
        self.calls["release"] += 1

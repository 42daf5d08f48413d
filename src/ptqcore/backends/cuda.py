"""CUDA through PyTorch for the GPU runners: a dedicated stream, buffers, and GPU compute time.

No pycuda: device memory is owned by torch CUDA tensors (their ``data_ptr()`` is what TensorRT
gets), work is queued on a dedicated ``torch.cuda.Stream``, and GPU compute time comes from a
pair of CUDA events recorded on that stream around the compute call only (DESIGN.md section 5,
rule 3). torch is imported inside the methods, so importing this module costs nothing.

:class:`CudaDevice` is the only place that touches ``torch.cuda``; a test can hand a runner a
stand-in with the same methods (CPU tensors, fixed event times) to check what the runner does
without a GPU.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Iterator, List, Tuple

import numpy as np

from .base import Runner


class CudaDevice:
    """One CUDA device as seen by torch. Every method is a thin wrapper over ``torch.cuda``."""

    def __init__(self, index: int = 0) -> None:
        import torch

        self.torch_device = torch.device("cuda", index)

    def new_stream(self):
        """A new stream on this device, so the runner's work never queues behind other work."""
        import torch

        return torch.cuda.Stream(device=self.torch_device)

    @staticmethod
    def stream_handle(stream) -> int:
        """The raw ``cudaStream_t`` that TensorRT's execute calls take."""
        return int(stream.cuda_stream)

    @staticmethod
    def on(stream):
        """Context manager making ``stream`` torch's current stream (copies and graphs run on it)."""
        import torch

        return torch.cuda.stream(stream)

    def empty(self, shape: Tuple[int, ...], dtype) -> object:
        """An uninitialised device tensor of NumPy ``dtype``."""
        import torch

        return torch.empty(tuple(shape), dtype=_torch_dtype(dtype), device=self.torch_device)

    @staticmethod
    def pinned(shape: Tuple[int, ...], dtype) -> object:
        """A page-locked host tensor, so host<->device copies are real asynchronous DMA."""
        import torch

        return torch.empty(tuple(shape), dtype=_torch_dtype(dtype), pin_memory=True)

    @staticmethod
    def event_pair() -> Tuple[object, object]:
        import torch

        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    @staticmethod
    def synchronize(stream) -> None:
        """Block until everything queued on ``stream`` has finished."""
        stream.synchronize()

    def module_copy(self, module):
        """A copy of ``module`` on this device (the original stays where it is, for the CPU runners)."""
        return copy.deepcopy(module).to(self.torch_device)

    @staticmethod
    def new_graph():
        import torch

        return torch.cuda.CUDAGraph()

    @staticmethod
    def capture(graph, stream):
        """Context manager capturing the work queued inside it into ``graph`` (on ``stream``)."""
        import torch

        kwargs = {"stream": stream}
        if "capture_error_mode" in inspect.signature(torch.cuda.graph).parameters:
            # TensorRT's own allocations on other threads must not invalidate the capture
            kwargs["capture_error_mode"] = "thread_local"
        return torch.cuda.graph(graph, **kwargs)

    @staticmethod
    def release() -> None:
        """Give cached device memory back to the driver after a runner is done."""
        import torch

        torch.cuda.empty_cache()


def _torch_dtype(dtype):
    import torch

    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype


class GpuTimer:
    """GPU compute milliseconds per timed region, from one pair of reusable CUDA events.

    Use ``with timer.region(stream): ...`` around the compute call, synchronize the stream, then
    ``timer.collect()`` appends that region's time to ``samples_ms``.
    """

    def __init__(self, device) -> None:
        self._start, self._end = device.event_pair()
        self.samples_ms: List[float] = []

    @contextlib.contextmanager
    def region(self, stream) -> Iterator[None]:
        self._start.record(stream)
        yield
        self._end.record(stream)

    def collect(self) -> None:
        """Record the last region's time; call only after its stream was synchronized."""
        self.samples_ms.append(float(self._start.elapsed_time(self._end)))


class GpuRunner(Runner):
    """A runner on a CUDA device that also records the GPU compute time of each inference.

    ``gpu_compute_ms`` lists one figure per compute call since the last
    :meth:`take_gpu_compute_ms` (a batch larger than an engine's profile is several calls).
    End-to-end latency stays the caller's clock around ``infer``, which returns only after the
    device-to-host copy has finished.
    """

    _timer = None

    @property
    def gpu_compute_ms(self) -> List[float]:
        return list(self._timer.samples_ms) if self._timer is not None else []

    def take_gpu_compute_ms(self) -> List[float]:
        """The GPU compute times recorded so far, and forget them (call before a timed run)."""
        if self._timer is None:
            return []
        samples, self._timer.samples_ms = self._timer.samples_ms, []
        return samples

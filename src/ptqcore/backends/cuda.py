"""CUDA through PyTorch for the GPU runners: a dedicated stream, buffers, and GPU compute time.

No pycuda: device memory is owned by torch CUDA tensors (their ``data_ptr()`` is what TensorRT
gets), work is queued on a dedicated ``torch.cuda.Stream``, and GPU compute time comes from a
pair of CUDA events recorded on that stream around the compute call only (the timing rules of
:mod:`ptqcore.measure.timing`). torch is imported inside the methods, so importing this module costs nothing.

**The timed interval** is trtexec's "GPU Compute Time" with ``--exposeDMA``: there
(``samples/common/sampleInference.cpp``, ``Iteration::query``, NVIDIA/TensorRT release/8.5 to
11.1) one iteration is in flight at a time, the compute stream waits for the input copy, then
``COMPUTE_S`` is recorded, the engine enqueued and ``COMPUTE_E`` recorded. The runners do the same
in one stream: copy the input, **synchronize**, record the start event, launch, record the end
event, copy the output back, synchronize. So the input copy is never inside ``gpu_compute_ms``
and both tools measure from an idle GPU to the end of the last kernel (host launch time of the
first kernels included in both). ``latency_ms`` (the caller's clock around ``infer``) stays end
to end.

**CUDA graphs** follow trtexec's ``createEnqueueFunction`` (same file): the work is run and the
stream synchronized at least once before capture; when the work fails under capture the capture
is ended, the CUDA error cleared and the runner goes on without a graph, saying why
(:func:`capture_graph`).

:class:`CudaDevice` is the only place that touches ``torch.cuda``; a test can hand a runner a
stand-in with the same methods (CPU tensors, fixed event times) to check what the runner does
without a GPU.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from ptqcore.backends.base import Runner


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
    def to_device(device_tensor, host_tensor) -> None:
        """Queue a host->device copy on the current stream (use inside :meth:`on`)."""
        device_tensor.copy_(host_tensor, non_blocking=True)

    @staticmethod
    def to_host(host_tensor, device_tensor) -> None:
        """Queue a device->host copy on the current stream (use inside :meth:`on`)."""
        host_tensor.copy_(device_tensor, non_blocking=True)

    @staticmethod
    def begin_capture(graph, stream):
        """Start capturing the work queued on ``stream`` into ``graph``; returns the handle that
        :meth:`end_capture` takes."""
        import torch

        kwargs = {"stream": stream}
        if "capture_error_mode" in inspect.signature(torch.cuda.graph).parameters:
            # TensorRT's own allocations on other threads must not invalidate the capture
            kwargs["capture_error_mode"] = "thread_local"
        handle = torch.cuda.graph(graph, **kwargs)
        handle.__enter__()
        return handle

    @staticmethod
    def end_capture(handle) -> None:
        """End a capture begun by :meth:`begin_capture`. Raises what CUDA reports when the capture
        was invalidated; the current stream is restored either way."""
        try:
            handle.__exit__(None, None, None)
        except BaseException:
            stream_ctx = getattr(handle, "stream_ctx", None)  # torch.cuda.graph skips it when capture_end raises
            if stream_ctx is not None:
                # the capture's own error is the one to report: a failure to restore the stream must not replace it
                with contextlib.suppress(Exception):
                    stream_ctx.__exit__(None, None, None)
            raise

    @staticmethod
    def clear_error() -> Optional[str]:
        """Clear the calling thread's last CUDA runtime error (``cudaGetLastError``), as trtexec
        does after a failed capture; returns the error's number as text, or None when there was
        none or the runtime could not be reached (the library torch loaded is used, found in
        ``/proc/self/maps``, so its error state is the one cleared)."""
        runtime = _loaded_cudart()
        if runtime is None:
            return None
        code = int(runtime.cudaGetLastError())
        return None if code == 0 else f"cudaError {code}"

    @staticmethod
    def release() -> None:
        """Give cached device memory back to the driver after a runner is done."""
        import torch

        torch.cuda.empty_cache()

def _loaded_cudart():
    """ctypes handle of the CUDA runtime library already loaded in this process, or None."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libcudart" in line and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            return ctypes.CDLL(path)  # already loaded: dlopen returns the same library
        except OSError:
            continue
    return None


def capture_graph(device, stream, work: Callable[[], Optional[str]]) -> Tuple[object, Optional[str]]:
    """Capture ``work`` into a new CUDA graph on ``stream``: ``(graph, None)``, or ``(None, reason)``
    when it cannot be captured.

    ``work`` queues the work and returns None, or the reason it failed (it may also raise). Call
    only after the same work ran and ``stream`` was synchronized (trtexec runs one enqueue and a
    synchronize before capture, so lazy initialisation is not captured). On failure the capture
    is ended (an error CUDA reports on ending it is part of the reason, never raised over the
    first one) and the CUDA error cleared, so the caller can go on without a graph.
    """
    graph = device.new_graph()
    reason = None
    handle = device.begin_capture(graph, stream)
    try:
        reason = work()
    except Exception as err:  # noqa: BLE001 - any failure under capture means: no graph
        reason = f"{type(err).__name__}: {err}"
    finally:
        try:
            device.end_capture(handle)
        except Exception as err:  # noqa: BLE001 - capture invalidated
            ended = f"ending the capture failed ({type(err).__name__}: {err})"
            reason = f"{reason}; {ended}" if reason else ended
    if reason is None:
        return graph, None
    cleared = device.clear_error()
    if cleared:
        reason += f" (cleared {cleared})"
    return None, reason


def _torch_dtype(dtype):
    import torch

    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype


class GpuTimer:
    """GPU compute milliseconds per timed region, from one pair of reusable CUDA events.

    Use ``with timer.region(stream): ...`` around the compute call only, after the input copy
    was synchronized (see the module docstring), synchronize the stream, then
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
    times_gpu_compute = True

    @property
    def gpu_compute_ms(self) -> List[float]:
        return list(self._timer.samples_ms) if self._timer is not None else []

    def take_gpu_compute_ms(self) -> List[float]:
        """The GPU compute times recorded so far, and forget them (call before a timed run)."""
        if self._timer is None:
            return []
        samples, self._timer.samples_ms = self._timer.samples_ms, []
        return samples

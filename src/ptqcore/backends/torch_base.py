"""The base case: the PyTorch FP32 model itself, run eagerly (the study's reference), on the CPU or a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ptqcore.backends.base import Backend, Int8Inputs, Runner
from ptqcore.backends.cuda import CudaDevice, GpuRunner, GpuTimer
from ptqcore.case import BASE_BACKEND, Case, Precision


class TorchBaseBackend(Backend):
    """Runs the ``base`` cases: the model's own PyTorch weights, eagerly, on each device that the
    selected compression backends use (so every compressed case has a base on its device). It
    builds nothing: its "artifact" is the base model the suite trained or loaded."""

    name = BASE_BACKEND
    precisions = (Precision.BASE.value,)

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    @property
    def device(self) -> str:
        return "cpu"

    def unsupported_reason(self, case: Case) -> Optional[str]:
        """Not a base case, or a device PyTorch cannot use here."""
        reason = super().unsupported_reason(case)
        if reason is None and case.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "PyTorch sees no CUDA GPU, so the base cannot run on cuda"
        return reason

    def versions(self) -> dict:
        import torch

        return {"torch": torch.__version__}

    def build(self, case: Case, onnx_path: Path, out_path: Path, int8: Optional[Int8Inputs]) -> Path:
        raise NotImplementedError("the base is the PyTorch model itself; nothing is built from ONNX")

    def runner(self, case: Case, artifact) -> Runner:
        """A runner of ``artifact``, the base ``nn.Module``, on the case's device."""
        if case.device == "cuda":
            return TorchCudaRunner(artifact)
        return TorchRunner(artifact, self.threads)


class TorchRunner(Runner):
    """Runs an ``nn.Module`` (or TorchScript module) on the CPU under ``torch.inference_mode``."""

    def __init__(self, model, threads: int = 0) -> None:
        self.model = model
        self.threads = threads
        self._saved_threads = None

    def activate(self) -> None:
        import torch

        self.model.eval()
        if self.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def deactivate(self) -> None:
        import torch

        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()


class TorchCudaRunner(GpuRunner):
    """Runs a copy of the PyTorch FP32 base model on a CUDA GPU, as the study did on the Jetson.

    Same rules as the TensorRT runner: work goes to a dedicated stream; ``infer`` copies the batch
    to the device and synchronizes, records the start event, runs the model, records the end
    event, copies the logits back and returns only after the stream has finished (end-to-end); so
    ``gpu_compute_ms`` is the model call alone, from an idle GPU, the interval trtexec's GPU
    Compute Time has under ``--exposeDMA`` (see :mod:`ptqcore.backends.cuda`).
    The model given is copied to the device in ``activate`` and the copy dropped in
    ``deactivate``, so the CPU model other runners use is left untouched. ``device`` is a
    :class:`~ptqcore.backends.cuda.CudaDevice` (or a stand-in in tests).
    """

    def __init__(self, model, device_index: int = 0, device=None) -> None:
        self.model = model
        self._device_index = device_index
        self._device = device
        self._module = None
        self._stream = None

    def activate(self) -> None:
        device = self._device = self._device or CudaDevice(self._device_index)
        self._module = device.module_copy(self.model).eval()
        self._stream = device.new_stream()
        self._timer = GpuTimer(device)

    def deactivate(self) -> None:
        self._module = self._stream = None
        if self._device is not None:
            self._device.release()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        device = self._device
        with torch.inference_mode(), device.on(self._stream):
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(
                device.torch_device, non_blocking=True
            )
        device.synchronize(self._stream)  # the input is on the GPU before the start event
        with torch.inference_mode(), device.on(self._stream):
            with self._timer.region(self._stream):
                logits = self._module(inputs)
            host = logits.to("cpu", non_blocking=True)
        device.synchronize(self._stream)
        self._timer.collect()
        return host.numpy()

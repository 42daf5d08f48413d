"""The implicit INT8 strategy's entropy calibrator (``IInt8EntropyCalibrator2``, TensorRT < 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ptqcore.backends.cuda import CudaDevice
from ptqcore.backends.tensorrt.keys import write_atomic


def make_entropy_calibrator(trt, images: np.ndarray, batch_size: int, cache_path: Optional[Path], device=None):
    """An ``IInt8EntropyCalibrator2`` over ``images`` in full batches of ``batch_size`` (a remainder is
    dropped), with its cache in ``cache_path``: when that file exists TensorRT reads it and skips
    calibration (``cache_reused`` says so). Batches go to the GPU through a torch CUDA tensor."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    batch_size = max(1, min(int(batch_size), len(images)))
    batches = [images[i : i + batch_size] for i in range(0, len(images) - batch_size + 1, batch_size)]

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = None if cache_path is None else Path(cache_path)
            self.cache_reused = False
            self.batches_served = 0
            self._device = device
            self._stream = self._buffer = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names, *args):
            import torch

            if self.batches_served >= len(batches):
                return None
            if self._buffer is None:
                self._device = self._device or CudaDevice()
                self._stream = self._device.new_stream()
                self._buffer = self._device.empty(batches[0].shape, np.float32)
            with self._device.on(self._stream):
                self._buffer.copy_(torch.from_numpy(batches[self.batches_served]))
            self._device.synchronize(self._stream)  # TensorRT reads the buffer on its own stream
            self.batches_served += 1
            return [int(self._buffer.data_ptr())]

        def read_calibration_cache(self):
            if self.cache_path is not None and self.cache_path.is_file():
                self.cache_reused = True
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if self.cache_path is not None:
                write_atomic(self.cache_path, bytes(cache))

    return EntropyCalibrator()


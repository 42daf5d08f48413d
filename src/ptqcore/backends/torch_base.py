"""The base case: the PyTorch FP32 model itself, run eagerly (the study's reference)."""

from __future__ import annotations

import numpy as np

from .base import Runner


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

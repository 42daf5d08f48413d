"""Everything a run depends on, as one frozen value: :class:`SuiteOptions`.

The pytest plugin maps its options onto these fields one to one; library users build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from .case import DEFAULT_CALIBRATION, Precision
from .export import DEFAULT_OPSET
from .models import IMAGENET_MEAN, IMAGENET_STD
from .store import default_cache_dir

#: Input side used when the data set is digits (8x8 scans upsampled): big enough for every study
#: model's downsampling, small enough that training all six on 2 CPU cores takes minutes.
DIGITS_IMAGE_SIZE = 32
#: The study fed every model 224x224 images.
STUDY_IMAGE_SIZE = 224


@dataclass(frozen=True)
class SuiteOptions:
    """Everything a run depends on; the pytest options map onto these fields one to one."""

    models: Tuple[str, ...] = ("study",)
    precisions: Tuple[Precision, ...] = tuple(Precision)
    backends: Tuple[str, ...] = ("onnxruntime",)
    batch_sizes: Tuple[int, ...] = (1,)
    dataset: str = "digits"
    data_root: Optional[Path] = None
    calibration_size: int = 128
    eval_size: Optional[int] = None
    eval_batch_size: int = 16
    calibrations: Tuple[str, ...] = (DEFAULT_CALIBRATION,)
    int8_recipe: str = "auto"
    percentile: float = 99.999
    cache_dir: Path = field(default_factory=default_cache_dir)
    weights: str = "auto"
    image_size: Optional[int] = None
    opset: int = DEFAULT_OPSET
    exporter: str = "legacy"
    compress_rounds: int = 3
    compress_warmup: int = 1
    latency_min_rounds: int = 20
    latency_min_seconds: float = 1.0
    latency_max_rounds: int = 100_000
    warmup_calls: int = 10
    warmup_seconds: float = 0.5
    threads: int = 0
    seed: int = 0
    #: None: the weight mode's default (``ptqcore.training.DEFAULT_EPOCHS``: 5 from scratch, 8 for a head).
    train_epochs: Optional[int] = None
    trt_workspace_mib: Optional[int] = None
    trt_int8: str = "explicit"
    trt_cuda_graph: bool = False
    telemetry: bool = True
    telemetry_interval: float = 0.2
    telemetry_samples: bool = False
    file_input_size: int = 224
    file_mean: Tuple[float, float, float] = IMAGENET_MEAN
    file_std: Tuple[float, float, float] = IMAGENET_STD


def physical_cores() -> int:
    """Physical CPU cores (psutil), else logical ones: the default thread count of both runtimes, so
    that ONNX Runtime and PyTorch are timed with the same, recorded number of threads."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1

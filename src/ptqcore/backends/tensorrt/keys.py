"""Cache keys of engines, timing caches and calibration caches, and the cache-file layer."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from ptqcore.backends.tensorrt.capabilities import TrtDevice
from ptqcore.backends.tensorrt.plan import TrtBuildOptions, precision_name
from ptqcore.case import Precision
from ptqcore.store import stable_key


# -- cache keys ------------------------------------------------------------------------------------
def _device_fields(trt_version: str, gpu_name: str, compute_capability: str) -> dict:
    device = TrtDevice(str(trt_version), str(gpu_name), str(compute_capability))
    for name, value in asdict(device).items():
        if not value.strip():
            raise ValueError(f"{name} must not be empty: caches are keyed by it")
    return device.as_dict()


def _hashes(source_sha256: Union[str, Sequence[str]]) -> List[str]:
    return [source_sha256] if isinstance(source_sha256, str) else [str(h) for h in source_sha256]


def engine_cache_inputs(
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    source_sha256: Union[str, Sequence[str]],
    precision: Union[str, Precision],
    options: Union["TrtBuildOptions", dict],
) -> dict:
    """The store inputs of an engine: TensorRT version, GPU, compute capability, model hash(es),
    precision and build options. ``source_sha256`` is the FP32 ONNX's hash, or for INT8 the hashes
    of everything the network comes from (ONNX, prepared ONNX, ranges)."""
    opts = options.key_fields() if isinstance(options, TrtBuildOptions) else dict(options)
    return {
        "artifact": "tensorrt-engine",
        **_device_fields(trt_version, gpu_name, compute_capability),
        "source_sha256": _hashes(source_sha256),
        "precision": precision_name(precision),
        "options": opts,
    }


def timing_cache_inputs(trt_version: str, gpu_name: str, compute_capability: str, source_sha256: str) -> dict:
    """The key of a timing cache: shared by the builds of one model on one TensorRT + GPU."""
    return {
        "artifact": "tensorrt-timing-cache",
        **_device_fields(trt_version, gpu_name, compute_capability),
        "source_sha256": _hashes(source_sha256),
    }


def calibration_cache_inputs(
    trt_version: str, gpu_name: str, compute_capability: str, source_sha256: str, images_sha256: str, batch_size: int
) -> dict:
    """The key of an implicit-calibration cache: model, calibration images and batch, on one TensorRT + GPU."""
    return {
        "artifact": "tensorrt-calibration-cache",
        **_device_fields(trt_version, gpu_name, compute_capability),
        "source_sha256": _hashes(source_sha256),
        "images_sha256": images_sha256,
        "batch_size": int(batch_size),
    }


def cache_file(cache_dir: Path, inputs: dict, filename: str) -> Path:
    """``CACHE/tensorrt/<artifact>/<key>/<filename>`` for a (mutable) cache file keyed by ``inputs``."""
    return Path(cache_dir) / "tensorrt" / str(inputs["artifact"]) / stable_key(inputs) / filename



def write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_bytes(data)
    os.replace(temp, path)



def array_sha256(images: np.ndarray) -> str:
    import hashlib

    array = np.ascontiguousarray(images)
    digest = hashlib.sha256(str((array.dtype.str, array.shape)).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()

"""Backends by name: the registry. ``torch`` runs the base cases; the others run compressed artifacts.

Adding a backend is one module with a :class:`~ptqcore.backends.base.Backend` subclass and one
entry in :func:`get_backend` (and :data:`BACKEND_NAMES` when users select it with ``--ptq-backends``).

``get_backend(name)`` raises :class:`~ptqcore.errors.UsageError` for names it does not know.
Backends that exist in the product but cannot run here still get a name and a reason, so their
cases are skipped at collection with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ptqcore.backends.base import Backend, Int8Inputs, Runner
from ptqcore.case import BASE_BACKEND
from ptqcore.errors import UsageError

#: The compression backends (``--ptq-backends``).
BACKEND_NAMES = ("onnxruntime", "tensorrt")
#: Every registered backend, the base's included (what thresholds overrides may name).
ALL_BACKEND_NAMES = BACKEND_NAMES + (BASE_BACKEND,)


def tensorrt_unavailable_reason() -> Optional[str]:
    """Why TensorRT cases cannot run here, or None: TensorRT not importable ("TensorRT is not
    installed (...)"), too old, or no CUDA GPU visible to PyTorch (see
    :func:`ptqcore.backends.tensorrt.unavailable_reason`)."""
    from ptqcore.backends.tensorrt import unavailable_reason

    return unavailable_reason()


def get_backend(name: str, threads: int = 0, cache_dir=None, tensorrt: Optional[dict] = None,
                int8_layout: str = "u8s8", ort_device: str = "cpu") -> Backend:
    """The backend called ``name``. ``cache_dir`` holds caches a backend reuses across builds
    (TensorRT's timing cache); None for builds that must start from nothing, such as timed rounds.
    ``tensorrt`` holds TensorRT settings: ``workspace_mib``, ``int8_strategy``, ``cuda_graph``.
    ``int8_layout`` is ONNX Runtime's INT8 layout (:data:`ptqcore.cpu_isa.INT8_RECIPES`) and ``ort_device`` its
    device (:data:`ptqcore.backends.onnxruntime.ORT_DEVICES`)."""
    if name == BASE_BACKEND:
        from ptqcore.backends.torch_base import TorchBaseBackend

        return TorchBaseBackend(threads=threads)
    if name == "onnxruntime":
        from ptqcore.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=threads, int8_layout=int8_layout, device=ort_device)
    if name == "tensorrt":
        from ptqcore.backends.tensorrt import TensorRTBackend, TrtBuildOptions

        settings = dict(tensorrt or {})
        cuda_graph = bool(settings.pop("cuda_graph", False))
        return TensorRTBackend(TrtBuildOptions(**settings), cache_dir=None if cache_dir is None else Path(cache_dir) / "tensorrt",
                               cuda_graph=cuda_graph)
    raise UsageError(f"unknown backend {name!r}", f"use one of {', '.join(BACKEND_NAMES)}")


__all__ = ["Backend", "Runner", "Int8Inputs", "BACKEND_NAMES", "ALL_BACKEND_NAMES", "get_backend",
           "tensorrt_unavailable_reason"]

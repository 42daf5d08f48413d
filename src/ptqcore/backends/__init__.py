"""Backends by name. ``torch`` runs the base cases; the others run compressed artifacts.

``get_backend(name)`` raises :class:`~ptqcore.errors.UsageError` for names it does not know.
Backends that exist in the product but cannot run here still get a name and a reason, so their
cases are skipped at collection with that reason.
"""

from __future__ import annotations

from typing import Optional

from ..errors import UsageError
from .base import Backend, Int8Inputs, Runner

BACKEND_NAMES = ("onnxruntime", "tensorrt")


def tensorrt_unavailable_reason() -> Optional[str]:
    """Why TensorRT cases cannot run here: TensorRT not importable ("TensorRT is not installed
    (...)"), too old, no CUDA GPU visible to PyTorch (see
    :func:`ptqcore.backends.tensorrt.unavailable_reason`), or, where all of that is fine, that the
    suite does not run TensorRT cases yet."""
    from .tensorrt import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        # TensorRT and a GPU are here, but the suite does not yet key engines by batch size, run
        # the base on the GPU or record the census and GPU compute time (issue #3): skip rather
        # than report half-measured TensorRT cases.
        return "TensorRT is installed, but ptqcore's suite does not run TensorRT cases yet (issue #3)"
    return reason


def get_backend(name: str, threads: int = 0) -> Backend:
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=threads)
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend()
    raise UsageError(f"unknown backend {name!r}", f"use one of {', '.join(BACKEND_NAMES)}")


__all__ = ["Backend", "Runner", "Int8Inputs", "BACKEND_NAMES", "get_backend", "tensorrt_unavailable_reason"]

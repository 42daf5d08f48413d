"""Backends by name. ``torch`` runs the base cases; the others run compressed artifacts.

``get_backend(name)`` raises :class:`~ptqcore.errors.UsageError` for names it does not know.
Backends that exist in the product but cannot run here still get a name and a reason, so their
cases are skipped at collection with that reason.
"""

from __future__ import annotations

import importlib.util
from typing import Optional

from ..errors import UsageError
from .base import Backend, Int8Inputs, Runner

BACKEND_NAMES = ("onnxruntime", "tensorrt")


def tensorrt_unavailable_reason() -> Optional[str]:
    """Why TensorRT cases cannot run here (checked without importing TensorRT)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it comes with JetPack on Jetson; on x86 install NVIDIA's wheel)"
    return "ptqcore's TensorRT engine backend is not built yet (tracked as issue #3)"


def get_backend(name: str, threads: int = 0) -> Backend:
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=threads)
    raise UsageError(f"unknown backend {name!r}", f"use one of {', '.join(BACKEND_NAMES)}")


__all__ = ["Backend", "Runner", "Int8Inputs", "BACKEND_NAMES", "get_backend", "tensorrt_unavailable_reason"]

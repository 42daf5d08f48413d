"""What the installed TensorRT offers and whether it can run here: versions, capabilities, availability,
the ONNX opset its parser reads, and the device facts caches are keyed by (:class:`TrtDevice`)."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from ptqcore.case import COMPRESSED_PRECISION_NAMES
from ptqcore.errors import PtqError

PRECISIONS = COMPRESSED_PRECISION_NAMES
#: ``explicit``: Q/DQ ONNX calibrated by ptqcore (every version); ``implicit-entropy``: TensorRT's
#: own entropy calibrator with a calibration cache (TensorRT < 11).
INT8_STRATEGIES = ("explicit", "implicit-entropy")
#: The oldest TensorRT this module drives (JetPack 4.6 shipped 8.0; ptqcore itself needs Python 3.8).
MIN_VERSION = (8, 0)
INSTALL_HINT = "it comes with JetPack on Jetson; on x86 install NVIDIA's wheel"


def parse_version(text: str) -> Tuple[int, ...]:
    """``"8.5.2.2"`` -> ``(8, 5, 2, 2)``; anything after the leading numbers is ignored."""
    numbers = []
    for part in str(text).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers) or (0,)


def _has(owner, *names: str) -> bool:
    return owner is not None and all(hasattr(owner, name) for name in names)


#: The first release whose explicit-quantization builds are strongly typed here (weak typing deprecated).
STRONG_QDQ_FROM = (10, 12)


@dataclass(frozen=True)
class TrtCapabilities:
    """What the installed TensorRT offers, read from the names its module and classes have.

    * ``has_v3_execution``: ``IExecutionContext.execute_async_v3`` and ``set_tensor_address`` (8.5+).
    * ``has_io_tensor_api``: name-based ``ICudaEngine.num_io_tensors`` / ``get_tensor_name`` /
      ``get_tensor_mode`` (8.5+).
    * ``has_bindings_api``: ``execute_async_v2`` and ``ICudaEngine.num_bindings`` (up to 8.6).
    * ``has_builder_fp16_int8_flags``: ``BuilderFlag.FP16`` and ``BuilderFlag.INT8`` (up to 10.x).
    * ``has_implicit_int8_calibrator``: ``IInt8EntropyCalibrator2`` and
      ``IBuilderConfig.int8_calibrator`` (up to 10.x; deprecated in 10.1, removed in 11.0).
    * ``needs_explicit_batch_flag``: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` exists and
      is still required (8.x; 10.x keeps the name but ignores it, 11 removed it).
    * ``has_strongly_typed_flag``: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists.
    * ``strongly_typed``: networks are always strongly typed, so precision must already be in
      the ONNX (no FP16/INT8 builder flags, or version >= 11).
    * ``qdq_strongly_typed``: the explicit-quantization path (a Q/DQ ONNX) builds a strongly typed
      network: always where ``strongly_typed``, and from 10.12, where the weakly typed FP16/INT8
      builder flags are deprecated (strong typing supersedes them) and ``STRONGLY_TYPED`` exists.
    * ``has_dla``: ``DeviceType``, ``IBuilderConfig.default_device_type`` / ``DLA_core`` /
      ``can_run_on_DLA``, ``BuilderFlag.GPU_FALLBACK`` and ``Builder.num_DLA_cores`` (every release
      in ``tests/data/tensorrt/names.json``, 8.6 to 11.4).
    * ``has_memory_pool_limit``: ``set_memory_pool_limit`` and ``MemoryPoolType`` (8.4+).
    * ``has_engine_inspector``: ``ICudaEngine.create_engine_inspector`` and
      ``LayerInformationFormat`` (8.2+).
    * ``has_timing_cache``, ``has_calibration_profile``, ``has_detailed_profiling``: the
      ``IBuilderConfig`` timing-cache calls, ``set_calibration_profile`` and
      ``ProfilingVerbosity.DETAILED``.
    """

    version: Tuple[int, ...]
    version_text: str
    has_v3_execution: bool
    has_io_tensor_api: bool
    has_bindings_api: bool
    has_builder_fp16_int8_flags: bool
    has_implicit_int8_calibrator: bool
    needs_explicit_batch_flag: bool
    has_strongly_typed_flag: bool
    strongly_typed: bool
    qdq_strongly_typed: bool
    has_dla: bool
    has_memory_pool_limit: bool
    has_engine_inspector: bool
    has_timing_cache: bool
    has_calibration_profile: bool
    has_detailed_profiling: bool

    @classmethod
    def from_module(cls, trt) -> "TrtCapabilities":
        text = str(getattr(trt, "__version__", "0"))
        version = parse_version(text)
        context = getattr(trt, "IExecutionContext", None)
        engine = getattr(trt, "ICudaEngine", None)
        config = getattr(trt, "IBuilderConfig", None)
        flags = getattr(trt, "BuilderFlag", None)
        network_flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
        fp16_int8 = _has(flags, "FP16", "INT8")
        return cls(
            version=version,
            version_text=text,
            has_v3_execution=_has(context, "execute_async_v3", "set_tensor_address"),
            has_io_tensor_api=_has(engine, "num_io_tensors", "get_tensor_name", "get_tensor_mode"),
            has_bindings_api=_has(context, "execute_async_v2") and _has(engine, "num_bindings"),
            has_builder_fp16_int8_flags=fp16_int8,
            has_implicit_int8_calibrator=hasattr(trt, "IInt8EntropyCalibrator2") and _has(config, "int8_calibrator"),
            needs_explicit_batch_flag=_has(network_flags, "EXPLICIT_BATCH") and version[0] < 10,
            has_strongly_typed_flag=_has(network_flags, "STRONGLY_TYPED"),
            strongly_typed=(not fp16_int8) or version[0] >= 11,
            qdq_strongly_typed=(not fp16_int8) or version[0] >= 11
            or (_has(network_flags, "STRONGLY_TYPED") and tuple(version[:2]) >= STRONG_QDQ_FROM),
            has_dla=hasattr(trt, "DeviceType") and _has(config, "default_device_type", "DLA_core", "can_run_on_DLA")
            and _has(flags, "GPU_FALLBACK") and _has(getattr(trt, "Builder", None), "num_DLA_cores"),
            has_memory_pool_limit=_has(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"),
            has_engine_inspector=_has(engine, "create_engine_inspector") and hasattr(trt, "LayerInformationFormat"),
            has_timing_cache=_has(config, "create_timing_cache", "set_timing_cache", "get_timing_cache"),
            has_calibration_profile=_has(config, "set_calibration_profile"),
            has_detailed_profiling=_has(getattr(trt, "ProfilingVerbosity", None), "DETAILED"),
        )


# -- availability and export ---------------------------------------------------------------------
def unavailable_reason() -> Optional[str]:
    """Why TensorRT cases cannot run here, or None.

    TensorRT not importable -> "TensorRT is not installed (...)"; older than :data:`MIN_VERSION`;
    importable but PyTorch sees no CUDA GPU (the runner's buffers are torch CUDA tensors).
    """
    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed ({INSTALL_HINT})"
    try:
        import tensorrt as trt
    except Exception as err:  # a broken install raises ImportError, OSError (missing libnvinfer), ...
        return f"TensorRT is not installed (import tensorrt failed: {type(err).__name__}: {err}; {INSTALL_HINT})"
    text = str(getattr(trt, "__version__", "unknown"))
    if parse_version(text) < MIN_VERSION:
        return f"TensorRT {text} is older than ptqcore supports (8.0 or newer)"
    try:
        import torch
    except ImportError as err:
        return f"TensorRT {text} is installed but PyTorch is not importable ({err})"
    if not torch.cuda.is_available():
        return (
            f"TensorRT {text} is installed but PyTorch sees no CUDA GPU (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none: a CPU-only build'}); the TensorRT runner keeps "
            "its buffers in torch CUDA tensors, so install a CUDA build of torch (NVIDIA's on Jetson)"
        )
    return None


#: The newest ONNX opset the ONNX parser of each TensorRT documents (onnx/onnx-tensorrt
#: ``docs/operators.md``: "supports operators up to Opset 13" on release/8.0 and release/8.2-GA,
#: "up to Opset 17" on release/8.4-GA and release/8.5-GA); ptqcore exports at 17 at most.
PARSER_OPSETS = (((8, 4), 17), ((8, 0), 13))


def onnx_export_for_tensorrt(version: Union[str, Tuple[int, ...]]) -> Tuple[str, int]:
    """(exporter, opset) that the ONNX parser of this TensorRT reads (:data:`PARSER_OPSETS`): the
    legacy exporter at opset 13 on TensorRT 8.0 and 8.2 (JetPack 4.6), 17 from 8.4 on (JetPack
    5.0.2 and later; the suite's default, so one ONNX file, and so one set of calibration ranges,
    serves every backend)."""
    numbers = parse_version(version) if isinstance(version, str) else tuple(version)
    for first, opset in PARSER_OPSETS:
        if numbers >= first:
            return ("legacy", opset)
    return ("legacy", 13)


def import_tensorrt():
    try:
        import tensorrt
    except Exception as err:
        raise PtqError(f"TensorRT is not importable ({type(err).__name__}: {err})", INSTALL_HINT) from None
    return tensorrt



@dataclass(frozen=True)
class TrtDevice:
    """The facts an engine, a calibration cache or a timing cache is tied to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @classmethod
    def current(cls, trt=None, index: int = 0) -> "TrtDevice":
        import torch

        trt = trt or import_tensorrt()
        major, minor = torch.cuda.get_device_capability(index)
        return cls(str(trt.__version__), torch.cuda.get_device_name(index), f"{major}.{minor}")

    def as_dict(self) -> dict:
        return {"tensorrt": self.tensorrt_version, "gpu": self.gpu_name, "compute_capability": self.compute_capability}

"""TensorRT engines (FP32, FP16, INT8) and their runner, across TensorRT 8.x, 10.x and 11.x.

TensorRT is imported only inside functions (``import ptqcore.backends.tensorrt`` works without
it), and every function that uses it takes an optional ``trt`` module, so tests can pass a fake
that mirrors one version's API. What the installed version offers is read from the names the
module has (:class:`TrtCapabilities`), not from a table of versions, with the version number used
only where names are ambiguous. The choices per precision (README, "TensorRT (Jetson and desktop GPUs)"):

* **FP32**: the ONNX file as exported.
* **FP16**: ``BuilderFlag.FP16`` on TensorRT < 11; on 11 (no precision flags, networks always
  strongly typed) an FP16 ONNX whose inputs and outputs stay FP32.
* **INT8, ``explicit``** (default, every version): a Q/DQ ONNX written by
  :func:`tensorrt_qdq_onnx` with :meth:`QuantRecipe.for_tensorrt` (signed INT8, zero points 0,
  per-channel weights with their own Q/DQ pair, FP32 bias) from the *same* calibration ranges file
  the ONNX Runtime INT8 model is quantized from. On TensorRT < 11 ``BuilderFlag.INT8`` is set (Q/DQ
  networks need it) and ``BuilderFlag.FP16`` too unless ``fp16_fallback`` is off, so layers left
  outside Q/DQ pairs may run in FP16; on 11 the network is strongly typed and they run in the
  ONNX's FP32.
* **INT8, ``implicit-entropy``**: the study's path, ``IInt8EntropyCalibrator2`` over the
  calibration images with a calibration cache file; TensorRT < 11 only (11.0 removed it).

Builds are keyed by TensorRT version, GPU name, compute capability and model hash
(:func:`engine_cache_inputs`), because plans, calibration caches and timing caches do not travel.

The modules, by job:

* :mod:`.capabilities`: version parsing, :class:`TrtCapabilities`, :func:`unavailable_reason`,
  the parser's opsets (:func:`onnx_export_for_tensorrt`) and :class:`TrtDevice`.
* :mod:`.plan`: :class:`TrtBuildOptions`, :class:`BuildPlan` and :func:`plan_build`.
* :mod:`.keys`: the cache keys (:func:`engine_cache_inputs`, :func:`timing_cache_inputs`,
  :func:`calibration_cache_inputs`) and cache files (:func:`cache_file`).
* :mod:`.calibrator`: the implicit strategy's entropy calibrator (:func:`make_entropy_calibrator`).
* :mod:`.build`: :func:`engine_from_onnx`, :func:`tensorrt_qdq_onnx` and the build record
  (:class:`EngineBuildInfo`, :func:`read_build_info`).
* :mod:`.census`: :func:`engine_census`, layers per precision and reformat layers from the engine inspector.
* :mod:`.runner`: :class:`TrtRunner`, which runs an engine with torch-owned CUDA buffers on a
  dedicated stream, and :func:`engine_io_shapes`.
* :mod:`.backend`: :class:`TensorRTBackend`.
"""

from ptqcore.backends.tensorrt.backend import TensorRTBackend
from ptqcore.backends.tensorrt.build import (
    EngineBuildInfo,
    build_info_path,
    engine_from_onnx,
    read_build_info,
    tensorrt_qdq_onnx,
)
from ptqcore.backends.tensorrt.calibrator import make_entropy_calibrator
from ptqcore.backends.tensorrt.capabilities import (
    INSTALL_HINT,
    INT8_STRATEGIES,
    MIN_VERSION,
    PARSER_OPSETS,
    PRECISIONS,
    TrtCapabilities,
    TrtDevice,
    onnx_export_for_tensorrt,
    parse_version,
    unavailable_reason,
)
from ptqcore.backends.tensorrt.census import census_from_inspector_json, engine_census
from ptqcore.backends.tensorrt.keys import (
    cache_file,
    calibration_cache_inputs,
    engine_cache_inputs,
    timing_cache_inputs,
)
from ptqcore.backends.tensorrt.plan import BuildPlan, TrtBuildOptions, plan_build
from ptqcore.backends.tensorrt.runner import TrtRunner, engine_io_shapes

__all__ = [
    "BuildPlan",
    "EngineBuildInfo",
    "INSTALL_HINT",
    "INT8_STRATEGIES",
    "MIN_VERSION",
    "PARSER_OPSETS",
    "PRECISIONS",
    "TensorRTBackend",
    "TrtBuildOptions",
    "TrtCapabilities",
    "TrtDevice",
    "TrtRunner",
    "build_info_path",
    "cache_file",
    "calibration_cache_inputs",
    "census_from_inspector_json",
    "engine_cache_inputs",
    "engine_census",
    "engine_from_onnx",
    "engine_io_shapes",
    "make_entropy_calibrator",
    "onnx_export_for_tensorrt",
    "parse_version",
    "plan_build",
    "read_build_info",
    "tensorrt_qdq_onnx",
    "timing_cache_inputs",
    "unavailable_reason",
]

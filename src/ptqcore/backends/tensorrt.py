"""TensorRT engines (FP32, FP16, INT8) and their runner, across TensorRT 8.x, 10.x and 11.x.

TensorRT is imported only inside functions (``import ptqcore.backends.tensorrt`` works without
it), and every function that uses it takes an optional ``trt`` module, so tests can pass a fake
that mirrors one version's API. What the installed version offers is read from the names the
module has (:class:`TrtCapabilities`), not from a table of versions, with the version number used
only where names are ambiguous. The facts behind the choices are in DESIGN.md section 4:

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
:class:`TrtRunner` runs an engine with torch-owned CUDA buffers on a dedicated stream;
:func:`engine_census` counts layers per precision and reformat layers from the engine inspector.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..case import Case, Precision
from ..errors import BuildError, PtqError
from ..quantize import CALIBRATIONS, QuantRecipe, fp16_onnx_from_onnx, qdq_onnx_from_onnx
from ..store import file_sha256, stable_key
from .base import Backend, Int8Inputs, Runner
from .cuda import CudaDevice, GpuRunner, GpuTimer, capture_graph

_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
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


def _import_tensorrt():
    try:
        import tensorrt
    except Exception as err:
        raise PtqError(f"TensorRT is not importable ({type(err).__name__}: {err})", INSTALL_HINT) from None
    return tensorrt


# -- cache keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtDevice:
    """The facts an engine, a calibration cache or a timing cache is tied to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @classmethod
    def current(cls, trt=None, index: int = 0) -> "TrtDevice":
        import torch

        trt = trt or _import_tensorrt()
        major, minor = torch.cuda.get_device_capability(index)
        return cls(str(trt.__version__), torch.cuda.get_device_name(index), f"{major}.{minor}")

    def as_dict(self) -> dict:
        return {"tensorrt": self.tensorrt_version, "gpu": self.gpu_name, "compute_capability": self.compute_capability}


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
        "precision": _precision_name(precision),
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


# -- build options and plan --------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtBuildOptions:
    """How engines are built. Every field but the two cache paths is part of the engine's key.

    ``batch_size``: the optimization profile is min 1, opt = max = ``batch_size``.
    ``workspace_mib``: workspace memory-pool limit (None: TensorRT's default; on Jetson the GPU
    shares memory with the CPU). ``int8_strategy``: one of :data:`INT8_STRATEGIES`.
    ``calibration_method``: the method the shared ranges were computed with (recorded; used if ONNX
    Runtime has to recalibrate). ``fp16_fallback``: on TensorRT < 11 set ``BuilderFlag.FP16``
    beside ``INT8``. ``tf32``: False clears ``BuilderFlag.TF32`` (strict FP32 on Ampere and newer).
    ``detailed_profiling``: ``ProfilingVerbosity.DETAILED``, so the engine census sees precisions.
    ``calibration_batch_size``: batch of the implicit calibrator. ``timing_cache``: file loaded
    before and saved after the build; ``calibration_cache``: the implicit calibrator's cache file.
    """

    batch_size: int = 1
    workspace_mib: Optional[int] = None
    int8_strategy: str = "explicit"
    calibration_method: str = "minmax"
    fp16_fallback: bool = True
    tf32: bool = True
    detailed_profiling: bool = True
    calibration_batch_size: int = 8
    timing_cache: Optional[Path] = None
    calibration_cache: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.calibration_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError("workspace_mib must be >= 1 (or None for TensorRT's default)")
        if self.int8_strategy not in INT8_STRATEGIES:
            raise ValueError(f"int8_strategy must be one of {INT8_STRATEGIES}, got {self.int8_strategy!r}")
        if self.calibration_method not in CALIBRATIONS:
            raise ValueError(f"calibration_method must be one of {CALIBRATIONS}, got {self.calibration_method!r}")

    def key_fields(self) -> dict:
        fields = asdict(self)
        fields.pop("timing_cache")
        fields.pop("calibration_cache")
        return fields


@dataclass(frozen=True)
class BuildPlan:
    """What a build does on one TensorRT version: decided by :func:`plan_build`, before any work.

    ``network_source``: ``fp32-onnx`` (the file as given), ``fp16-onnx`` or ``qdq-onnx`` (written
    beside the engine). ``builder_flags`` / ``cleared_flags``: ``BuilderFlag`` names set / cleared.
    ``network_flags``: ``NetworkDefinitionCreationFlag`` names.
    """

    precision: str
    strategy: str
    network_source: str
    builder_flags: Tuple[str, ...]
    cleared_flags: Tuple[str, ...]
    network_flags: Tuple[str, ...]
    strongly_typed: bool
    calibrator: bool


def _precision_name(precision: Union[str, Precision]) -> str:
    name = precision.value if isinstance(precision, Precision) else str(precision)
    if name not in PRECISIONS:
        raise ValueError(f"TensorRT engines are built in {PRECISIONS}, not {name!r}")
    return name


def plan_build(caps: TrtCapabilities, precision: Union[str, Precision], options: TrtBuildOptions) -> BuildPlan:
    """The build plan for ``precision`` on the TensorRT described by ``caps``.

    Raises :class:`PtqError` for a strategy the version cannot do (``implicit-entropy`` on 11).
    """
    precision = _precision_name(precision)
    typed = caps.strongly_typed
    network_flags = tuple(
        name
        for name, wanted in (("EXPLICIT_BATCH", caps.needs_explicit_batch_flag),
                             ("STRONGLY_TYPED", typed and caps.has_strongly_typed_flag))
        if wanted
    )
    cleared = () if options.tf32 else ("TF32",)
    weak_int8 = ("INT8", "FP16") if options.fp16_fallback else ("INT8",)
    if precision == "fp32":
        strategy, source, flags = "fp32", "fp32-onnx", ()
    elif precision == "fp16":
        strategy, source, flags = ("fp16-onnx", "fp16-onnx", ()) if typed else ("fp16-builder-flag", "fp32-onnx", ("FP16",))
    elif options.int8_strategy == "implicit-entropy":
        if typed or not caps.has_implicit_int8_calibrator:
            raise PtqError(
                f"the implicit-entropy INT8 strategy needs IInt8EntropyCalibrator2 and BuilderFlag.INT8, which "
                f"TensorRT {caps.version_text} does not have (deprecated in 10.1, removed in 11.0: TensorRT 11 "
                "builds INT8 only from explicit Q/DQ models)",
                "use the default explicit strategy (a Q/DQ ONNX calibrated by ptqcore) or TensorRT 10.x or older",
            )
        strategy, source, flags = "int8-implicit-entropy", "fp32-onnx", weak_int8
    else:
        strategy, source, flags = "int8-explicit-qdq", "qdq-onnx", () if typed else weak_int8
    return BuildPlan(
        precision=precision,
        strategy=strategy,
        network_source=source,
        builder_flags=flags,
        cleared_flags=cleared,
        network_flags=network_flags,
        strongly_typed=typed,
        calibrator=strategy == "int8-implicit-entropy",
    )


@dataclass(frozen=True)
class EngineBuildInfo:
    """What one engine build did; also written beside the engine as ``<engine>.build.json``.

    ``timing_cache_status`` / ``calibration_cache_status``: ``not used``, ``created``,
    ``reused`` or (timing cache) ``rejected, rebuilt`` when the file did not match this TensorRT/GPU.
    ``network_source`` is the file parsed (here, in memory); ``network_kind`` is the plan's
    ``fp32-onnx`` / ``fp16-onnx`` / ``qdq-onnx``.

    :meth:`as_dict` (what records get) holds no path that may not exist after the run: the store
    builds in a temporary folder that it renames, so the network is recorded as ``network_source``
    (its kind), ``network_file`` (its name relative to the engine's folder when it was written
    beside the engine, which travels with it; else None) and ``network_sha256``. The cache paths
    (``timing_cache``, ``calibration_cache``) are kept: they live in the cache folder, not the
    build folder. ``engine_path`` is where the build wrote; the backend drops it from records.
    """

    engine_path: Path
    precision: str
    strategy: str
    tensorrt_version: str
    network_source: Path
    builder_flags: Tuple[str, ...]
    network_flags: Tuple[str, ...]
    strongly_typed: bool
    workspace_bytes: Optional[int]
    profile: Optional[Dict[str, List[int]]]
    timing_cache: Optional[str]
    timing_cache_status: str
    calibration_cache: Optional[str]
    calibration_cache_status: str
    build_s: float
    options: dict = field(default_factory=dict)
    network_kind: str = ""

    def as_dict(self) -> dict:
        out = asdict(self)
        source = Path(self.network_source)
        beside = source.parent.resolve() == Path(self.engine_path).parent.resolve()
        out["engine_path"] = str(self.engine_path)
        out["network_source"] = self.network_kind or "onnx"
        out.pop("network_kind")
        out["network_file"] = source.name if beside else None
        out["network_sha256"] = file_sha256(source) if source.is_file() else None
        out["builder_flags"] = list(self.builder_flags)
        out["network_flags"] = list(self.network_flags)
        return out


def build_info_path(engine_path: Path) -> Path:
    return Path(engine_path).with_name(Path(engine_path).name + ".build.json")


def read_build_info(engine_path: Path) -> dict:
    """The ``as_dict()`` of the build that wrote ``engine_path``."""
    return json.loads(build_info_path(engine_path).read_text())


def _write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_bytes(data)
    os.replace(temp, path)


# -- building ------------------------------------------------------------------------------------------
def tensorrt_qdq_onnx(int8: Int8Inputs, calibration_method: str, out_path: Path) -> Path:
    """The Q/DQ ONNX TensorRT builds INT8 from: the prepared model quantized from the shared ranges
    file with :meth:`QuantRecipe.for_tensorrt` (the ONNX Runtime INT8 model uses the same ranges)."""
    return qdq_onnx_from_onnx(
        int8.prepared_onnx, int8.ranges, QuantRecipe.for_tensorrt(calibration_method), out_path
    )


def _recording_logger(trt):
    """A ``trt.ILogger`` that keeps errors (for our error messages) and forwards warnings to logging."""
    severity = trt.ILogger.Severity

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, level, message) -> None:
            if int(level) <= int(severity.ERROR):
                self.errors.append(str(message))
                _log.error("TensorRT: %s", message)
            elif int(level) <= int(severity.WARNING):
                _log.warning("TensorRT: %s", message)

    return RecordingLogger()


def _parse_onnx(trt, parser, path: Path) -> None:
    parsed = parser.parse_from_file(str(path)) if hasattr(parser, "parse_from_file") else parser.parse(path.read_bytes())
    if not parsed:
        messages = [str(parser.get_error(i)) for i in range(parser.num_errors)] or ["the parser gave no message"]
        raise BuildError(
            f"TensorRT {trt.__version__}'s ONNX parser rejected {path.name}: {' | '.join(messages)}",
            "export with the legacy exporter at an opset this TensorRT reads (13 on 8.0/8.2, 17 from 8.4: "
            "--ptq-exporter legacy --ptq-opset 17); operators TensorRT lacks need a plugin",
        )


def _network_source(plan: BuildPlan, onnx_path: Path, out_path: Path, calibration: Optional[Int8Inputs],
                    options: TrtBuildOptions) -> Path:
    if plan.network_source == "fp16-onnx":
        return fp16_onnx_from_onnx(onnx_path, out_path.with_name(out_path.stem + ".fp16.onnx"))
    if plan.precision == "int8" and calibration is None:
        raise BuildError("an INT8 engine needs the prepared model and its calibration ranges", "pass calibration=Int8Inputs(...)")
    if plan.network_source == "qdq-onnx":
        return tensorrt_qdq_onnx(calibration, options.calibration_method, out_path.with_name(out_path.stem + ".qdq.onnx"))
    return Path(onnx_path)


def _optimization_profile(builder, network, config, batch_size: int, source: Path) -> Optional[Dict[str, List[int]]]:
    if network.num_inputs != 1:
        raise BuildError(f"{source.name} has {network.num_inputs} inputs", "give a classifier with one image input")
    tensor = network.get_input(0)
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape[1:]):
        raise BuildError(f"{source.name} has dynamic non-batch dimensions {shape}", "export with a fixed image size")
    if shape[0] >= 0:
        if shape[0] != batch_size:
            raise BuildError(
                f"{source.name} has a fixed batch of {shape[0]}, not {batch_size}",
                "export with a dynamic batch dimension (ptqcore's exporter does) or use that batch size",
            )
        return None
    rest = shape[1:]
    shapes = {"min": [1, *rest], "opt": [batch_size, *rest], "max": [batch_size, *rest]}
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)
    return shapes


def _use_timing_cache(trt, config, path: Optional[Path]) -> str:
    if path is None:
        return "not used"
    blob = Path(path).read_bytes() if Path(path).is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
        accepted = cache is not None and config.set_timing_cache(cache, False)
    except Exception as err:  # a truncated or foreign blob: the bindings raise RuntimeError, TypeError, ...
        _log.warning("TensorRT could not read the timing cache %s (%s)", path, err)
        accepted = False
    if accepted:
        return "reused" if blob else "created"
    _log.warning("the timing cache %s does not match TensorRT %s on this GPU: starting a new one", path, trt.__version__)
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return "rejected, rebuilt"


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
                _write_atomic(self.cache_path, bytes(cache))

    return EntropyCalibrator()


def _configure(trt, caps: TrtCapabilities, config, plan: BuildPlan, options: TrtBuildOptions) -> Optional[int]:
    """Set the plan's builder flags, the workspace limit and the profiling verbosity; return the workspace bytes."""
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    workspace = None if options.workspace_mib is None else options.workspace_mib << 20
    if workspace is not None:
        if caps.has_memory_pool_limit:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        else:
            config.max_workspace_size = workspace
    if options.detailed_profiling and caps.has_detailed_profiling:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return workspace


def _attach_calibrator(trt, caps: TrtCapabilities, builder, network, config, calibration: Optional[Int8Inputs],
                       options: TrtBuildOptions, device):
    """The implicit strategy's entropy calibrator, set on ``config`` with a calibration profile of its batch."""
    if calibration is None or calibration.calibration_images is None:
        raise BuildError("the implicit-entropy strategy needs the calibration images", "pass Int8Inputs with calibration_images")
    calibrator = make_entropy_calibrator(
        trt, calibration.calibration_images, options.calibration_batch_size, options.calibration_cache, device
    )
    if caps.has_calibration_profile:
        tensor = network.get_input(0)
        fixed = (calibrator.get_batch_size(), *(int(d) for d in tuple(tensor.shape)[1:]))
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(tensor.name, fixed, fixed, fixed)
        config.set_calibration_profile(calibration_profile)
    config.int8_calibrator = calibrator
    return calibrator


def engine_from_onnx(
    onnx_path: Path,
    out_path: Path,
    precision: Union[str, Precision],
    options: TrtBuildOptions = TrtBuildOptions(),
    calibration: Optional[Int8Inputs] = None,
    trt=None,
    device=None,
) -> EngineBuildInfo:
    """Build and write the TensorRT engine for ``precision`` from the FP32 ONNX file ``onnx_path``.

    The strategy per version is :func:`plan_build`'s. INT8 needs ``calibration``: the prepared ONNX
    and the calibration ranges shared with ONNX Runtime (explicit), or the calibration images
    (``implicit-entropy``). Derived ONNX files (``*.fp16.onnx``, ``*.qdq.onnx``) are written beside
    ``out_path``, and so is ``<engine>.build.json`` (:meth:`EngineBuildInfo.as_dict`). Raises
    :class:`BuildError` with the parser's or builder's own messages when TensorRT refuses.
    ``device`` is the calibrator's :class:`CudaDevice` (a stand-in in tests).
    """
    trt = trt or _import_tensorrt()
    caps = TrtCapabilities.from_module(trt)
    plan = plan_build(caps, precision, options)
    out_path = Path(out_path)
    source = _network_source(plan, Path(onnx_path), out_path, calibration, options)

    logger = _recording_logger(trt)
    builder = trt.Builder(logger)
    network_flags = 0
    for name in plan.network_flags:
        network_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    _parse_onnx(trt, parser, source)

    config = builder.create_builder_config()
    workspace = _configure(trt, caps, config, plan, options)
    profile = _optimization_profile(builder, network, config, options.batch_size, source)
    timing_status = _use_timing_cache(trt, config, options.timing_cache) if caps.has_timing_cache else "not used"
    calibrator = _attach_calibrator(trt, caps, builder, network, config, calibration, options, device) if plan.calibrator else None

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - started
    if serialized is None:
        raise BuildError(
            f"TensorRT {trt.__version__} could not build the {plan.precision} engine from {source.name}: "
            + (" | ".join(logger.errors) or "no error was logged"),
            "read TensorRT's messages; if tactics ran out of memory raise workspace_mib",
        )
    with open(out_path, "wb") as handle:
        handle.write(serialized)
    if options.timing_cache is not None and caps.has_timing_cache:
        _write_atomic(Path(options.timing_cache), bytes(config.get_timing_cache().serialize()))

    calibration_status = "not used"
    if calibrator is not None and options.calibration_cache is not None:
        calibration_status = "reused" if calibrator.cache_reused else "created"
    info = EngineBuildInfo(
        engine_path=out_path,
        precision=plan.precision,
        strategy=plan.strategy,
        tensorrt_version=str(trt.__version__),
        network_source=source,
        builder_flags=plan.builder_flags,
        network_flags=plan.network_flags,
        strongly_typed=plan.strongly_typed,
        workspace_bytes=workspace,
        profile=profile,
        timing_cache=None if options.timing_cache is None else str(options.timing_cache),
        timing_cache_status=timing_status,
        calibration_cache=None if options.calibration_cache is None else str(options.calibration_cache),
        calibration_cache_status=calibration_status,
        build_s=build_s,
        options=options.key_fields(),
        network_kind=plan.network_source,
    )
    build_info_path(out_path).write_text(json.dumps(info.as_dict(), indent=2))
    return info


# -- engine census -----------------------------------------------------------------------------------
#: TensorRT's data-type words in the inspector's format strings, by the name the census reports.
_TYPE_WORDS = (
    ("BFloat16", r"BFloat16|BF16"),
    ("Float", r"Float|FP32|kFLOAT"),
    ("Half", r"Half|FP16|kHALF"),
    ("Int8", r"Int8|INT8|kINT8"),
    ("UInt8", r"UInt8|UINT8"),
    ("Int32", r"Int32|INT32"),
    ("Int64", r"Int64|INT64"),
    ("FP8", r"FP8|E4M3"),
    ("Bool", r"Bool|BOOL"),
)
_TYPE_PATTERN = re.compile("|".join(rf"(?P<{name}>\b(?:{words})\b)" for name, words in _TYPE_WORDS))
#: Layers that do no work (elided reformats, multi-stream synchronisation) are not counted.
_NOT_RUN = ("NoOp", "signal", "wait")


def _type_of(text: object) -> str:
    match = _TYPE_PATTERN.search(str(text or ""))
    return match.lastgroup if match else "Unknown"


#: Keys a tensor's data type may be under, in lower case, most specific first. TensorRT 8.x-10.x
#: write ``Format/Datatype`` (and Polygraphy at release/11.1, ``backend/trt/util.py``, and TREx at
#: release/11.0, ``trex/activations.py``, still read only that key); a split ``DataType`` /
#: ``Datatype`` key beside ``Format`` is accepted too, in case a later release splits it.
_DATATYPE_KEYS = ("datatype", "data type", "format/datatype")


def _tensor_type(tensor: dict) -> str:
    """The census name of a tensor's data type, from whichever datatype key it has (any case)."""
    keys = {str(key).strip().lower(): value for key, value in tensor.items()}
    for key in _DATATYPE_KEYS:
        if key in keys:
            return _type_of(keys[key])
    return "Unknown"


def _layer_facts(layer) -> Tuple[Optional[str], str, bool, bool]:
    """(layer type or None, precision, is a reformat, its details were known) of one inspector entry."""
    if isinstance(layer, dict):
        kind = layer.get("LayerType")
        if "Precision" in layer:
            precision = _type_of(layer["Precision"])
        else:
            tensors = list(layer.get("Inputs") or []) + list(layer.get("Outputs") or [])
            precision = _tensor_type(tensors[0]) if tensors and isinstance(tensors[0], dict) else "Unknown"
        reformat = "Reformat" in (kind, layer.get("ParameterType"))
        return kind, precision, reformat, True
    text = str(layer)
    kind_match = re.search(r"LayerType:\s*([A-Za-z0-9_]+)", text)
    if kind_match:  # a one-line description: "Name: ..., LayerType: ..., Inputs: [{... Format/Datatype: ...}]"
        format_match = re.search(r"(?:Format/Datatype|Data ?Type):\s*([^,\]}]+)", text, re.IGNORECASE)
        precision = _type_of(format_match.group(1)) if format_match else "Unknown"
        reformat = kind_match.group(1) == "Reformat" or "ParameterType: Reformat" in text
        return kind_match.group(1), precision, reformat, True
    # a bare layer name (ProfilingVerbosity other than DETAILED): only reformat copies are recognisable
    return None, "Unknown", text.startswith("Reformatting CopyNode"), False


def _text_layers(text: str) -> List[str]:
    """The layer lines of plain one-line text: those under ``Layers:``, up to ``Bindings:``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Bindings:" in lines:
        lines = lines[: lines.index("Bindings:")]
    return [line for line in lines if line != "Layers:"]


def census_from_inspector_json(text: str) -> dict:
    """Layer counts of an engine from ``IEngineInspector.get_engine_information(JSON)``.

    Reads the detailed layout (``{"Layers": [{"Name", "LayerType", "Inputs": [{"Format/Datatype"}],
    ...}]}``; the datatype key is matched without regard to case, and a split ``DataType`` key
    beside ``Format`` is read as well: see :data:`_DATATYPE_KEYS`), the names-only layout older builds and
    non-DETAILED engines give (``{"Layers": ["name", ...]}``, one line per layer) and plain one-line
    text. Returns ``layers`` (layers that run: ``NoOp`` and signal/wait excluded),
    ``layers_by_precision`` (by the type of each layer's first input, e.g. ``{"Int8": 40, "Half":
    3, "Float": 2}``; ``Unknown`` without details), ``reformat_layers`` (``Reformat`` layers,
    including those TensorRT made from Q/DQ nodes), ``reformat_layers_from_qdq`` and ``detailed``.
    """
    try:
        document = json.loads(text, strict=False)  # TensorRT 8.6/10 put raw control characters in names
    except ValueError:
        document = {"Layers": _text_layers(text)}
    layers = document.get("Layers") if isinstance(document, dict) else document
    if not isinstance(layers, list):
        raise ValueError("engine information without a 'Layers' list")
    by_precision: Dict[str, int] = {}
    counted = reformats = from_qdq = 0
    detailed = bool(layers)
    for layer in layers:
        kind, precision, reformat, known = _layer_facts(layer)
        detailed = detailed and known
        if kind in _NOT_RUN:
            continue
        counted += 1
        by_precision[precision] = by_precision.get(precision, 0) + 1
        if reformat:
            reformats += 1
            from_qdq += isinstance(layer, dict) and layer.get("Origin") == "QDQ"
    return {
        "layers": counted,
        "layers_by_precision": dict(sorted(by_precision.items(), key=lambda item: (-item[1], item[0]))),
        "reformat_layers": reformats,
        "reformat_layers_from_qdq": int(from_qdq),
        "detailed": detailed,
    }


def engine_census(engine, trt) -> Optional[dict]:
    """:func:`census_from_inspector_json` of a deserialized engine, or None where TensorRT has no
    engine inspector (before 8.2). Build with ``detailed_profiling`` so precisions are known."""
    if not TrtCapabilities.from_module(trt).has_engine_inspector:
        return None
    inspector = engine.create_engine_inspector()
    return census_from_inspector_json(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


# -- running -----------------------------------------------------------------------------------------
@dataclass
class _Tensor:
    """One engine input or output and, once the runner is active, its buffers."""

    name: str
    index: int
    is_input: bool
    dtype: np.dtype
    shape: Tuple[int, ...]
    profile: Optional[Tuple[Tuple[int, ...], ...]] = None  # (min, opt, max) of a dynamic input
    max_shape: Tuple[int, ...] = ()
    device: object = None
    host: object = None


def _engine_tensors(engine, trt, caps: TrtCapabilities) -> List[_Tensor]:
    tensors = []
    if caps.has_io_tensor_api:
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dynamic = is_input and any(d < 0 for d in shape)
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0)) if dynamic else None
            tensors.append(_Tensor(name, index, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), shape, profile))
    else:
        for index in range(engine.num_bindings):
            is_input = bool(engine.binding_is_input(index))
            shape = tuple(int(d) for d in engine.get_binding_shape(index))
            dynamic = is_input and any(d < 0 for d in shape)
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_profile_shape(0, index)) if dynamic else None
            tensors.append(_Tensor(engine.get_binding_name(index), index, is_input,
                                   np.dtype(trt.nptype(engine.get_binding_dtype(index))), shape, profile))
    for tensor in tensors:
        tensor.max_shape = tensor.profile[2] if tensor.profile else tensor.shape
    return tensors


def _load_engine(trt, logger, engine_path: Path):
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise BuildError(
            f"TensorRT {trt.__version__} could not load the engine {engine_path}",
            "an engine runs only on the TensorRT version and GPU that built it: rebuild it here "
            "(ptqcore's cache keys engines by both)",
        )
    return runtime, engine


def engine_io_shapes(engine_path: Path, trt=None) -> Dict[str, dict]:
    """Name -> ``{"input": bool, "shape": [...], "profile": [min, opt, max] or None}`` of an engine file."""
    trt = trt or _import_tensorrt()
    _runtime, engine = _load_engine(trt, _recording_logger(trt), engine_path)
    return {
        t.name: {"input": t.is_input, "shape": list(t.shape), "profile": [list(s) for s in t.profile] if t.profile else None}
        for t in _engine_tensors(engine, trt, TrtCapabilities.from_module(trt))
    }


class TrtRunner(GpuRunner):
    """Runs a serialized engine on one CUDA device (see :class:`~ptqcore.backends.cuda.GpuRunner`).

    ``activate`` loads the engine and allocates, for the profile's largest shape, one device buffer
    per input and output (torch CUDA tensors: their ``data_ptr()`` is what TensorRT gets) and one
    pinned host buffer each, on a dedicated stream. ``infer(batch)`` copies the batch host->device
    and synchronizes, records the start event, launches (``execute_async_v3`` with tensor
    addresses where the version has it, else the bindings API ``execute_async_v2``, or the graph's
    replay), records the end event, copies the first output device->host and synchronizes: so it is
    end to end, and ``gpu_compute_ms`` is exactly trtexec's GPU Compute Time interval under
    ``--exposeDMA`` (see :mod:`ptqcore.backends.cuda`). A batch larger than the profile's maximum
    runs in chunks (one ``gpu_compute_ms`` figure per chunk).

    ``cuda_graph``: after ``graph_warmup`` (>= 1: at least one enqueue and a synchronize, as
    trtexec does before it captures) inferences at one shape the launch is captured into a CUDA
    graph and replayed from then on (recaptured when the shape changes). When the enqueue fails
    under capture, the capture is ended, the CUDA error cleared, and this runner enqueues without
    graphs from then on; :meth:`graph_status` says whether graphs are in use and why not.
    ``trt`` and ``device`` replace the ``tensorrt`` module and :class:`CudaDevice` (tests).
    """

    def __init__(self, engine_path: Path, cuda_graph: bool = False, graph_warmup: int = 3,
                 device_index: int = 0, trt=None, device=None) -> None:
        if int(graph_warmup) < 1:
            raise ValueError(
                f"graph_warmup must be >= 1, got {graph_warmup}: the work must run and the stream be "
                "synchronized once before capture, or TensorRT's lazy initialisation is captured (trtexec does the same)"
            )
        self.engine_path = Path(engine_path)
        self.cuda_graph = cuda_graph
        self.graph_warmup = int(graph_warmup)
        self.device_index = device_index
        self._trt = trt
        self._device = device
        self.engine = self.context = None
        self._graph = None
        self._graph_failure: Optional[str] = None
        self._last_was_replay = False

    # -- lifecycle ------------------------------------------------------------------------------
    def activate(self) -> None:
        trt = self._trt = self._trt or _import_tensorrt()
        caps = TrtCapabilities.from_module(trt)
        if not (caps.has_v3_execution or caps.has_bindings_api):
            raise BuildError(f"TensorRT {trt.__version__} has neither execute_async_v3 nor execute_async_v2", INSTALL_HINT)
        self._v3 = caps.has_v3_execution and caps.has_io_tensor_api
        device = self._device = self._device or CudaDevice(self.device_index)
        self._logger = _recording_logger(trt)
        self._runtime, self.engine = _load_engine(trt, self._logger, self.engine_path)
        self.context = self.engine.create_execution_context()
        self._stream = device.new_stream()
        self._timer = GpuTimer(device)
        tensors = _engine_tensors(self.engine, trt, caps)
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise BuildError(f"{self.engine_path} has {len(inputs)} inputs", "give a classifier with one image input")
        self._input, self._outputs = inputs[0], [t for t in tensors if not t.is_input]
        self._set_shape(self._input.max_shape)
        for tensor in self._outputs:
            tensor.max_shape = self._context_shape(tensor)
        self._bindings = [0] * len(tensors)
        for tensor in tensors:
            tensor.device = device.empty(tensor.max_shape, tensor.dtype)
            tensor.host = device.pinned(tensor.max_shape, tensor.dtype)
            address = int(tensor.device.data_ptr())
            if self._v3:
                self.context.set_tensor_address(tensor.name, address)
            self._bindings[tensor.index] = address
        self._tensors = tensors

    def deactivate(self) -> None:
        self._graph = None
        for tensor in getattr(self, "_tensors", []):
            tensor.device = tensor.host = None
        self.context = None
        self.engine = None
        self._runtime = None
        if self._device is not None and getattr(self, "_stream", None) is not None:
            self._stream = None
            self._device.release()

    def graph_status(self) -> dict:
        """``{"cuda_graph": bool, "cuda_graph_reason": str or None}``.

        ``cuda_graph`` is True only when graphs were asked for, captured, and the last inference
        replayed one. Otherwise ``cuda_graph_reason`` says why not: ``"not requested"``, the
        capture failure (this runner then ran without graphs, as trtexec does), or
        ``"not captured yet"`` (fewer than ``graph_warmup`` inferences at the current shape).
        """
        if not self.cuda_graph:
            return {"cuda_graph": False, "cuda_graph_reason": "not requested"}
        if self._graph_failure is not None:
            return {"cuda_graph": False,
                    "cuda_graph_reason": f"capture failed, ran without CUDA graphs: {self._graph_failure}"}
        if self._graph is None or not self._last_was_replay:
            return {"cuda_graph": False, "cuda_graph_reason": f"not captured yet (graph_warmup={self.graph_warmup})"}
        return {"cuda_graph": True, "cuda_graph_reason": None}

    def census(self) -> Optional[dict]:
        """:func:`engine_census` of the loaded engine (call while active), with :meth:`graph_status`
        merged in (``cuda_graph``, ``cuda_graph_reason``), so the record says how it was run."""
        census = engine_census(self.engine, self._trt)
        return {**(census or {}), **self.graph_status()}

    # -- inference ------------------------------------------------------------------------------
    def _set_shape(self, shape: Tuple[int, ...]) -> None:
        if self._v3:
            accepted = self.context.set_input_shape(self._input.name, tuple(shape))
        else:
            accepted = self.context.set_binding_shape(self._input.index, tuple(shape))
        if accepted is False:
            raise BuildError(f"the engine {self.engine_path.name} does not accept input shape {tuple(shape)}",
                             f"its profile is {self._input.profile}")
        self._shape = tuple(shape)
        self._output_shape = self._context_shape(self._outputs[0])
        self._graph = None
        self._last_was_replay = False
        self._runs_at_shape = 0

    def _context_shape(self, tensor: _Tensor) -> Tuple[int, ...]:
        if self._v3:
            return tuple(int(d) for d in self.context.get_tensor_shape(tensor.name))
        return tuple(int(d) for d in self.context.get_binding_shape(tensor.index))

    def _try_enqueue(self) -> Optional[str]:
        """Queue one execution on the runner's stream: None, or TensorRT's reason it failed."""
        handle = self._device.stream_handle(self._stream)
        errors = len(self._logger.errors)
        if self._v3:
            done = self.context.execute_async_v3(handle)
        else:
            done = self.context.execute_async_v2(self._bindings, handle)
        if done:
            return None
        return f"TensorRT failed to run {self.engine_path.name}: " + (
            " | ".join(self._logger.errors[errors:]) or "no error was logged")

    def _enqueue(self) -> None:
        failure = self._try_enqueue()
        if failure is not None:
            raise BuildError(failure, "read TensorRT's messages above")

    def _capture(self) -> None:
        """Capture the enqueue (called after >= 1 inference, which ended with a synchronize, at
        this shape); on failure keep running without graphs and remember why."""
        graph, failure = capture_graph(self._device, self._stream, self._try_enqueue)
        if failure is not None:
            self._graph_failure = failure
            _log.warning("CUDA graph capture of %s failed; running without CUDA graphs: %s",
                         self.engine_path.name, failure)
        self._graph = graph

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.ascontiguousarray(batch, dtype=self._input.dtype)
        limit = self._input.max_shape[0]
        if batch.shape[0] > limit:
            return np.concatenate([self.infer(batch[i : i + limit]) for i in range(0, batch.shape[0], limit)])
        if batch.shape != self._shape:
            self._set_shape(batch.shape)
        if (self.cuda_graph and self._graph is None and self._graph_failure is None
                and self._runs_at_shape >= self.graph_warmup):
            self._capture()
        device = self._device
        output = self._outputs[0]
        size = int(np.prod(self._output_shape))
        host_in = self._input.host.view(-1)[: batch.size].view(batch.shape)
        device_in = self._input.device.view(-1)[: batch.size].view(batch.shape)
        host_out = output.host.view(-1)[:size].view(self._output_shape)
        device_out = output.device.view(-1)[:size].view(self._output_shape)
        host_in.copy_(torch.from_numpy(batch))
        with device.on(self._stream):
            device.to_device(device_in, host_in)
        device.synchronize(self._stream)  # the input is on the GPU before the start event (trtexec --exposeDMA)
        with device.on(self._stream):
            with self._timer.region(self._stream):
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._enqueue()
            device.to_host(host_out, device_out)
        device.synchronize(self._stream)
        self._timer.collect()
        self._last_was_replay = self._graph is not None
        self._runs_at_shape += 1
        return host_out.numpy().copy()


# -- the backend ---------------------------------------------------------------------------------------
class TensorRTBackend(Backend):
    """TensorRT engines on the CUDA device: FP32, FP16 and INT8 (see the module docstring).

    ``options`` are the defaults of every build (``batch_size`` and ``calibration_method`` come
    from the case). With ``cache_dir`` the timing cache (and the implicit calibrator's cache) live
    there, keyed by TensorRT version, GPU, compute capability and model hash. ``trt`` and
    ``device`` replace the ``tensorrt`` module and the CUDA device (tests).
    """

    name = "tensorrt"
    precisions = PRECISIONS
    artifact_suffix = ".engine"
    per_batch_artifacts = True

    def __init__(self, options: TrtBuildOptions = TrtBuildOptions(), cache_dir: Optional[Path] = None,
                 cuda_graph: bool = False, trt=None, device=None, trt_device: Optional[TrtDevice] = None) -> None:
        self.options = options
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.cuda_graph = cuda_graph
        self._trt = trt
        self._device = device
        self._trt_device = trt_device

    @property
    def device(self) -> str:
        return "cuda"

    def unavailable_reason(self) -> Optional[str]:
        return None if self._trt is not None else unavailable_reason()

    def unsupported_reason(self, case: Case) -> Optional[str]:
        reason = super().unsupported_reason(case)
        if reason or case.precision is not Precision.INT8 or self.unavailable_reason():
            return reason
        try:
            plan_build(self.capabilities(), case.precision, self.options)
        except PtqError as err:
            return err.problem
        return None

    def capabilities(self) -> TrtCapabilities:
        return TrtCapabilities.from_module(self._trt or _import_tensorrt())

    def trt_device(self) -> TrtDevice:
        if self._trt_device is None:
            self._trt_device = TrtDevice.current(self._trt)
        return self._trt_device

    def versions(self) -> dict:
        return self.trt_device().as_dict()

    def options_for(self, case: Case, onnx_sha256: str, images: Optional[np.ndarray] = None) -> TrtBuildOptions:
        """The build options of ``case``: its batch size and calibration method, and cache files."""
        options = replace(self.options, batch_size=case.batch_size,
                          calibration_method=case.recipe or self.options.calibration_method)
        if self.cache_dir is None:
            return options
        device = self.trt_device()
        fields = (device.tensorrt_version, device.gpu_name, device.compute_capability)
        timing = cache_file(self.cache_dir, timing_cache_inputs(*fields, onnx_sha256), "timing.cache")
        calibration_cache = None
        if images is not None and case.precision is Precision.INT8 and options.int8_strategy == "implicit-entropy":
            images_sha = _array_sha256(images)
            inputs = calibration_cache_inputs(*fields, onnx_sha256, images_sha, options.calibration_batch_size)
            calibration_cache = cache_file(self.cache_dir, inputs, "calibration.cache")
        return replace(options, timing_cache=timing, calibration_cache=calibration_cache)

    def artifact_details(self, artifact: Path) -> dict:
        """``engine_path`` (what the acceptance script loads) and the build's flags and cache use."""
        details = {"engine_path": str(artifact)}
        if build_info_path(artifact).is_file():
            build = read_build_info(artifact)
            build.pop("engine_path", None)  # written where the build ran, before the store moved it
            source = str(build.get("network_source") or "")
            if os.sep in source or "/" in source:  # a build.json from before: a path into the build folder
                name = Path(source).name
                build["network_source"] = "onnx"
                build["network_file"] = name if (Path(artifact).parent / name).is_file() else None
            details["engine_build"] = build
        return details

    def export_settings(self, exporter: str, opset: int) -> Tuple[str, int]:
        """The legacy exporter at the newest opset the installed TensorRT parses (13 on 8.0/8.2, else 17)."""
        return onnx_export_for_tensorrt(self.trt_device().tensorrt_version)

    def artifact_inputs(self, case: Case, source_sha256: Union[str, Sequence[str]]) -> dict:
        """The store inputs of ``case``'s engine (:func:`engine_cache_inputs` on this machine)."""
        device = self.trt_device()
        options = replace(self.options, batch_size=case.batch_size,
                          calibration_method=case.recipe or self.options.calibration_method)
        return engine_cache_inputs(device.tensorrt_version, device.gpu_name, device.compute_capability,
                                   source_sha256, case.precision, options)

    def build_engine(self, case: Case, onnx_path: Path, out_path: Path, int8: Optional[Int8Inputs]) -> EngineBuildInfo:
        images = None if int8 is None else int8.calibration_images
        options = self.options_for(case, file_sha256(Path(onnx_path)), images)
        return engine_from_onnx(onnx_path, out_path, case.precision, options, int8, self._trt, self._device)

    def build(self, case: Case, onnx_path: Path, out_path: Path, int8: Optional[Int8Inputs]) -> Path:
        return self.build_engine(case, onnx_path, out_path, int8).engine_path

    def _int8_recipe(self, case: Case) -> QuantRecipe:
        return QuantRecipe.for_tensorrt(case.recipe or self.options.calibration_method)

    def int8_record_fields(self, case: Case) -> dict:
        return {**self._int8_recipe(case).record_fields(), "int8_strategy": self.options.int8_strategy}

    def int8_needs_ranges(self, case: Case) -> bool:
        """Explicit INT8 builds from ptqcore's ranges; the study's implicit path calibrates inside
        TensorRT from the images alone, so its timed rounds run no ONNX Runtime calibration."""
        return self.options.int8_strategy == "explicit"

    def int8_reference_onnx(self, case: Case, int8: Int8Inputs, out_path: Path) -> Path:
        """The TensorRT-form Q/DQ model (for the implicit strategy too, whose calibrator then
        accounts for part of the kernel difference)."""
        return tensorrt_qdq_onnx(int8, case.recipe or self.options.calibration_method, out_path)

    def runner(self, case: Case, artifact: Path) -> Runner:
        return TrtRunner(artifact, cuda_graph=self.cuda_graph, trt=self._trt, device=self._device)


def _array_sha256(images: np.ndarray) -> str:
    import hashlib

    array = np.ascontiguousarray(images)
    digest = hashlib.sha256(str((array.dtype.str, array.shape)).encode())
    digest.update(array.tobytes())
    return digest.hexdigest()

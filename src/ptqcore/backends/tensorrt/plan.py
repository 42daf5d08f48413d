"""How an engine is built: the build options and the per-version build plan (:func:`plan_build`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from ptqcore.backends.tensorrt.capabilities import INT8_STRATEGIES, PRECISIONS, TrtCapabilities
from ptqcore.case import CALIBRATION_METHODS, DEFAULT_CALIBRATION, QUANTIZED_PRECISION_NAMES, Precision
from ptqcore.errors import PtqError


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
    ``dla_core``: build for that DLA core (``DeviceType.DLA``) with ``BuilderFlag.GPU_FALLBACK`` for
    the layers DLA cannot run; FP16 and INT8 only (DLA has no FP32). None: the GPU.
    """

    batch_size: int = 1
    workspace_mib: Optional[int] = None
    int8_strategy: str = "explicit"
    calibration_method: str = DEFAULT_CALIBRATION
    fp16_fallback: bool = True
    tf32: bool = True
    detailed_profiling: bool = True
    calibration_batch_size: int = 8
    dla_core: Optional[int] = None
    timing_cache: Optional[Path] = None
    calibration_cache: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.calibration_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError("dla_core must be >= 0 (or None for the GPU)")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ValueError("workspace_mib must be >= 1 (or None for TensorRT's default)")
        if self.int8_strategy not in INT8_STRATEGIES:
            raise ValueError(f"int8_strategy must be one of {INT8_STRATEGIES}, got {self.int8_strategy!r}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration_method must be one of {CALIBRATION_METHODS}, got {self.calibration_method!r}")

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
    dla_core: Optional[int] = None


def precision_name(precision: Union[str, Precision]) -> str:
    name = precision.value if isinstance(precision, Precision) else str(precision)
    if name not in PRECISIONS:
        raise ValueError(f"TensorRT engines are built in {PRECISIONS}, not {name!r}")
    return name


def plan_build(caps: TrtCapabilities, precision: Union[str, Precision], options: TrtBuildOptions) -> BuildPlan:
    """The build plan for ``precision`` on the TensorRT described by ``caps``.

    Raises :class:`PtqError` for a strategy the version cannot do (``implicit-entropy`` on 11).
    """
    precision = precision_name(precision)
    if options.dla_core is not None and precision == "fp32":
        raise PtqError("DLA runs FP16 and INT8 engines only, not fp32", "drop fp32 from --ptq-precisions, or --ptq-trt-dla")
    if options.dla_core is not None and not caps.has_dla:
        raise PtqError(f"TensorRT {caps.version_text} has no DLA API (DeviceType, IBuilderConfig.DLA_core)",
                       "use a TensorRT with DLA support (JetPack), or drop --ptq-trt-dla")
    explicit_qdq = precision in QUANTIZED_PRECISION_NAMES and options.int8_strategy != "implicit-entropy"
    typed = caps.qdq_strongly_typed if explicit_qdq else caps.strongly_typed
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
        if precision == "int8-mixed":
            raise PtqError(
                "int8-mixed keeps chosen layers in float by leaving their Q/DQ pairs out of an explicit Q/DQ model;"
                " the implicit-entropy strategy has no Q/DQ model to leave them out of",
                "use the default explicit strategy (--ptq-trt-int8 explicit) for int8-mixed",
            )
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
    if options.dla_core is not None:
        flags = flags + ("GPU_FALLBACK",)
    return BuildPlan(
        precision=precision,
        strategy=strategy,
        network_source=source,
        builder_flags=flags,
        cleared_flags=cleared,
        network_flags=network_flags,
        strongly_typed=typed,
        calibrator=strategy == "int8-implicit-entropy",
        dla_core=options.dla_core,
    )

"""Engine builds: :func:`engine_from_onnx`, the network it parses, the builder configuration, the
implicit calibrator's attachment, and the build record (:class:`EngineBuildInfo`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ptqcore.backends.base import Int8Inputs
from ptqcore.backends.tensorrt.calibrator import make_entropy_calibrator
from ptqcore.backends.tensorrt.capabilities import TrtCapabilities, import_tensorrt
from ptqcore.backends.tensorrt.keys import write_atomic
from ptqcore.backends.tensorrt.logger import NO_ERROR_LOGGED, process_logger
from ptqcore.backends.tensorrt.plan import BuildPlan, TrtBuildOptions, plan_build
from ptqcore.build.quantize import QuantRecipe, fp16_onnx_from_onnx, qdq_onnx_from_onnx
from ptqcore.case import QUANTIZED_PRECISION_NAMES, Precision
from ptqcore.errors import BuildError
from ptqcore.store import file_sha256

_log = logging.getLogger(__name__)


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
    #: DLA placement (:func:`dla_placement`) of a build for a DLA core, else None
    dla: Optional[dict] = None

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


# -- building ------------------------------------------------------------------------------------------
def tensorrt_recipe(calibration_method: str) -> QuantRecipe:
    """The one place the TensorRT backend's INT8 recipe is chosen: :meth:`QuantRecipe.for_tensorrt`."""
    return QuantRecipe.for_tensorrt(calibration_method)


def tensorrt_qdq_onnx(int8: Int8Inputs, calibration_method: str, out_path: Path) -> Path:
    """The Q/DQ ONNX TensorRT builds INT8 from: the prepared model quantized from the shared ranges
    file with :func:`tensorrt_recipe` (the ONNX Runtime INT8 model uses the same ranges).

    ``int8.float_nodes`` (``int8-mixed``) get no Q/DQ pair: TensorRT runs a layer without Q/DQ
    inputs in the best float precision the build allows, FP16 where ``BuilderFlag.FP16`` is set
    (below 11, see :mod:`.plan`), and in the type the strongly typed network gives it (FP32) on 11."""
    recipe = replace(tensorrt_recipe(calibration_method), nodes_to_exclude=tuple(int8.float_nodes))
    return qdq_onnx_from_onnx(int8.prepared_onnx, int8.ranges, recipe, out_path)


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
    if plan.precision in QUANTIZED_PRECISION_NAMES and calibration is None:
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
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    return workspace


#: Layers of a DLA build a record names (the count is always whole).
DLA_FALLBACK_NAMES = 20


def dla_placement(network, config, core: int) -> dict:
    """Which layers of the parsed ``network`` the DLA core runs and which fall back to the GPU, as
    ``IBuilderConfig.can_run_on_DLA`` says per layer before the build (with ``GPU_FALLBACK`` set the
    builder puts the others on the GPU). Read from the network, not from the built engine."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    fallback = [str(layer.name) for layer in layers if not config.can_run_on_DLA(layer)]
    return {"core": core, "layers": len(layers), "on_dla": len(layers) - len(fallback),
            "gpu_fallback": len(fallback), "gpu_fallback_layers": fallback[:DLA_FALLBACK_NAMES],
            "source": "IBuilderConfig.can_run_on_DLA per network layer, before the build"}


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
    trt = trt or import_tensorrt()
    caps = TrtCapabilities.from_module(trt)
    plan = plan_build(caps, precision, options)
    out_path = Path(out_path)
    source = _network_source(plan, Path(onnx_path), out_path, calibration, options)

    logger = process_logger(trt)
    since = logger.mark()
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
    dla = dla_placement(network, config, plan.dla_core) if plan.dla_core is not None else None

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - started
    if serialized is None:
        raise BuildError(
            f"TensorRT {trt.__version__} could not build the {plan.precision} engine from {source.name}: "
            + (" | ".join(logger.errors_since(since)) or NO_ERROR_LOGGED),
            "read TensorRT's messages; if tactics ran out of memory raise workspace_mib",
        )
    with open(out_path, "wb") as handle:
        handle.write(serialized)
    if options.timing_cache is not None and caps.has_timing_cache:
        write_atomic(Path(options.timing_cache), bytes(config.get_timing_cache().serialize()))

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
        dla=dla,
    )
    build_info_path(out_path).write_text(json.dumps(info.as_dict(), indent=2))
    return info

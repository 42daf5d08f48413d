"""The TensorRT backend (:class:`TensorRTBackend`): availability, cache keys and builds per case, runners."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ptqcore.backends.base import Backend, Int8Inputs, Runner
from ptqcore.backends.tensorrt.build import (
    EngineBuildInfo,
    build_info_path,
    engine_from_onnx,
    read_build_info,
    tensorrt_qdq_onnx,
    tensorrt_recipe,
)
from ptqcore.backends.tensorrt.capabilities import (
    PRECISIONS,
    TrtCapabilities,
    TrtDevice,
    import_tensorrt,
    onnx_export_for_tensorrt,
    unavailable_reason,
)
from ptqcore.backends.tensorrt.keys import (
    array_sha256,
    cache_file,
    calibration_cache_inputs,
    engine_cache_inputs,
    timing_cache_inputs,
)
from ptqcore.backends.tensorrt.logger import process_logger
from ptqcore.backends.tensorrt.plan import TrtBuildOptions, plan_build
from ptqcore.backends.tensorrt.runner import TrtRunner
from ptqcore.build.quantize import QuantRecipe
from ptqcore.case import Case
from ptqcore.errors import PtqError
from ptqcore.store import file_sha256


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
        self._dla_cores: Optional[int] = None

    @property
    def device(self) -> str:
        return "cuda"

    def unavailable_reason(self) -> Optional[str]:
        return None if self._trt is not None else unavailable_reason()

    def unsupported_reason(self, case: Case) -> Optional[str]:
        reason = super().unsupported_reason(case)
        if reason or self.unavailable_reason():
            return reason
        if self.options.dla_core is not None:
            reason = self.dla_reason()
            if reason:
                return reason
        elif not case.precision.quantized:
            return None
        try:
            plan_build(self.capabilities(), case.precision, self.options)
        except PtqError as err:
            return err.problem
        return None

    def dla_reason(self) -> Optional[str]:
        """Why ``--ptq-trt-dla`` cases cannot run on this board (no DLA API, too few DLA cores), or None."""
        trt = self._trt or import_tensorrt()
        if not self.capabilities().has_dla:
            return f"TensorRT {trt.__version__} has no DLA API (DeviceType, IBuilderConfig.DLA_core)"
        if self._dla_cores is None:  # one builder per backend, not one per case at collection
            self._dla_cores = int(trt.Builder(process_logger(trt)).num_DLA_cores)
        cores = self._dla_cores
        if self.options.dla_core >= cores:
            return (f"this board has {cores} DLA core(s): --ptq-trt-dla {self.options.dla_core} needs one with DLA"
                    " (Jetson AGX Xavier, Xavier NX, AGX Orin, Orin NX)")
        return None

    def capabilities(self) -> TrtCapabilities:
        return TrtCapabilities.from_module(self._trt or import_tensorrt())

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
        if images is not None and case.precision.quantized and options.int8_strategy == "implicit-entropy":
            images_sha = array_sha256(images)
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

    def int8_recipe(self, case: Case) -> QuantRecipe:
        return tensorrt_recipe(case.recipe or self.options.calibration_method)

    def int8_record_fields(self, case: Case) -> dict:
        return {**self.int8_recipe(case).record_fields(), "int8_strategy": self.options.int8_strategy}

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

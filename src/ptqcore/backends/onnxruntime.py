"""ONNX Runtime: FP32, FP16 and INT8 (Q/DQ, per-channel) artifacts on the CPU or, with onnxruntime-gpu, on the GPU.

The backend's device (``--ptq-ort-device``) names its execution providers (:data:`ORT_DEVICES`):
``cpu`` (INT8 in the layout that suits the CPU), ``cuda`` (the CUDA execution provider) or
``tensorrt`` (ONNX Runtime's TensorRT execution provider, CUDA behind it). On a GPU device INT8 is
symmetric S8S8 (zero point 0: what TensorRT accepts), as the TensorRT backend quantizes. A session
that ONNX Runtime quietly put on the CPU for a GPU device (the provider missing from this build, or
failing to start) is an error, never a CPU figure under a GPU name; records name the providers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from ptqcore.backends.base import Backend, Int8Inputs, Runner
from ptqcore.build.quantize import QuantRecipe, fp16_onnx_from_onnx, qdq_onnx_from_onnx
from ptqcore.case import COMPRESSED_PRECISION_NAMES, Case, Precision
from ptqcore.errors import BuildError

#: device -> the execution providers its sessions ask for, first the one that must serve it.
ORT_DEVICES = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


class OrtRunner(Runner):
    """An ``InferenceSession`` on the CPU execution provider; ``threads`` 0 is ONNX Runtime's default.

    ``reference=True`` turns every graph optimization off: each QuantizeLinear / DequantizeLinear
    of a Q/DQ file then executes as written with the op between them in float (fake
    quantization), which no CPU instruction set changes. That is the INT8 reference.
    """

    def __init__(self, model_path: Path, threads: int = 0, reference: bool = False,
                 providers: tuple = ORT_DEVICES["cpu"]) -> None:
        self.model_path = Path(model_path)
        self.threads = threads
        self.reference = reference
        self.providers = tuple(providers)
        self.session = None

    #: Profiles layers with ONNX Runtime's own profiler (:mod:`ptqcore.backends.ort_profile`).
    has_layer_profiler = True

    def _options(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_DISABLE_ALL if self.reference else level.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return options

    def activate(self) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(self.model_path), self._options(), providers=list(self.providers))
        used = tuple(self.session.get_providers())
        if not used or used[0] != self.providers[0]:
            self.session = None
            raise BuildError(
                f"ONNX Runtime put {self.model_path.name} on {', '.join(used) or 'no provider'} although"
                f" {self.providers[0]} was asked for: its figures would be CPU figures",
                "install onnxruntime-gpu with that provider (on a Jetson NVIDIA's wheel, and no CPU onnxruntime beside"
                " it: see ptqcore doctor) or use --ptq-ort-device cpu")
        self._input = self.session.get_inputs()[0].name
        self._outputs = [self.session.get_outputs()[0].name]

    def deactivate(self) -> None:
        self.session = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self._input: batch})[0]

    def profile_layers(self, batch: np.ndarray, calls: int, warmup: int, quantized: bool, graph=None):
        """The per-node profile of ``calls`` runs of ``batch`` after ``warmup``, in a profiling session
        of its own with this runner's settings (:func:`~ptqcore.backends.ort_profile.profile_session`);
        the graph is the artifact's own (``graph`` is not needed)."""
        from ptqcore.backends.ort_profile import profile_session

        return profile_session(self.model_path, self._options, self.providers, {self._input: batch}, calls,
                               warmup, quantized)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = COMPRESSED_PRECISION_NAMES
    artifact_suffix = ".onnx"
    int8_artifact_is_reference = True

    def __init__(self, threads: int = 0, int8_layout: str = "u8s8", device: str = "cpu") -> None:
        if device not in ORT_DEVICES:
            raise ValueError(f"device must be one of {', '.join(ORT_DEVICES)}, got {device!r}")
        self.threads = threads
        self.int8_layout = int8_layout
        self._device = device
        self.providers = ORT_DEVICES[device]

    @property
    def device(self) -> str:
        """``cpu``, or ``cuda`` for both GPU devices (the hardware: the base then runs on CUDA too; the
        records' ``ort_providers`` say which execution provider ran)."""
        return "cpu" if self._device == "cpu" else "cuda"

    def unavailable_reason(self) -> Optional[str]:
        try:
            import onnxruntime
        except ImportError as err:
            return f"onnxruntime is not importable ({err}); pip install onnxruntime"
        available = onnxruntime.get_available_providers()
        if self.providers[0] not in available:
            return (f"this onnxruntime {onnxruntime.__version__} has no {self.providers[0]} (it offers"
                    f" {', '.join(available)}): --ptq-ort-device {self._device} needs onnxruntime-gpu (on a Jetson"
                    " NVIDIA's wheel)")
        return None

    def artifact_details(self, artifact: Path) -> dict:
        return {"ort_providers": list(self.providers)}

    def versions(self) -> dict:
        import onnx
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def int8_recipe(self, case: Case) -> QuantRecipe:
        if self._device != "cpu":
            return QuantRecipe.for_tensorrt(case.recipe)
        return QuantRecipe.for_onnxruntime_cpu(case.recipe, self.int8_layout)

    def int8_record_fields(self, case: Case) -> dict:
        return self.int8_recipe(case).record_fields()

    def int8_reference_onnx(self, case: Case, int8: Int8Inputs, out_path: Path) -> Path:
        return self.build(case, int8.prepared_onnx, out_path, int8)

    def artifact_inputs(self, case: Case, source_sha256) -> dict:
        inputs = super().artifact_inputs(case, source_sha256)
        if case.precision.quantized:
            inputs["recipe"] = self.int8_recipe(case).as_dict()
        return inputs

    def build(self, case: Case, onnx_path: Path, out_path: Path, int8: Optional[Int8Inputs]) -> Path:
        if case.precision is Precision.FP32:
            shutil.copyfile(onnx_path, out_path)
            return Path(out_path)
        if case.precision is Precision.FP16:
            return fp16_onnx_from_onnx(onnx_path, out_path)
        if case.precision.quantized:
            if int8 is None:
                raise ValueError("an INT8 build needs the prepared model and its calibration ranges")
            recipe = replace(self.int8_recipe(case), nodes_to_exclude=tuple(int8.float_nodes))
            return qdq_onnx_from_onnx(int8.prepared_onnx, int8.ranges, recipe, out_path)
        raise ValueError(f"{self.name} does not build {case.precision.value}")

    def runner(self, case: Case, artifact: Path) -> Runner:
        return OrtRunner(artifact, self.threads, providers=self.providers)

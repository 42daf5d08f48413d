"""ONNX Runtime on the CPU: FP32, FP16 and INT8 (Q/DQ, per-channel, in the layout that suits the CPU) artifacts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from ptqcore.backends.base import Backend, Int8Inputs, Runner
from ptqcore.build.quantize import QuantRecipe, fp16_onnx_from_onnx, qdq_onnx_from_onnx
from ptqcore.case import COMPRESSED_PRECISION_NAMES, Case, Precision


class OrtRunner(Runner):
    """An ``InferenceSession`` on the CPU execution provider; ``threads`` 0 is ONNX Runtime's default.

    ``reference=True`` turns every graph optimization off: each QuantizeLinear / DequantizeLinear
    of a Q/DQ file then executes as written with the op between them in float (fake
    quantization), which no CPU instruction set changes. That is the INT8 reference.
    """

    def __init__(self, model_path: Path, threads: int = 0, reference: bool = False) -> None:
        self.model_path = Path(model_path)
        self.threads = threads
        self.reference = reference
        self.session = None

    def activate(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_DISABLE_ALL if self.reference else level.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self._outputs = [self.session.get_outputs()[0].name]

    def deactivate(self) -> None:
        self.session = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self._input: batch})[0]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = COMPRESSED_PRECISION_NAMES
    artifact_suffix = ".onnx"
    int8_artifact_is_reference = True

    def __init__(self, threads: int = 0, int8_layout: str = "u8s8") -> None:
        self.threads = threads
        self.int8_layout = int8_layout

    @property
    def device(self) -> str:
        return "cpu"

    def unavailable_reason(self) -> Optional[str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            return f"onnxruntime is not importable ({err}); pip install onnxruntime"
        return None

    def versions(self) -> dict:
        import onnx
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}

    def int8_recipe(self, case: Case) -> QuantRecipe:
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
        return OrtRunner(artifact, self.threads)

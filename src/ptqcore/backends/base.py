"""The interface every backend implements, and the runner contract the timing code relies on.

A :class:`Backend` turns an FP32 ONNX file into its artifact for one case (phase 2) and gives a
:class:`Runner` for that artifact. Backends import their heavy libraries inside their methods, so
listing or skipping a backend costs nothing on a machine that lacks it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from ptqcore.case import Case

if TYPE_CHECKING:
    from ptqcore.build.quantize import QuantRecipe


@dataclass(frozen=True)
class Int8Inputs:
    """What an INT8 build starts from: the pre-processed ONNX and the calibration ranges computed on
    it, and the calibration images (prepared model and ranges are None for a backend whose
    :meth:`Backend.int8_needs_ranges` is False); ``float_nodes``: the nodes an ``int8-mixed`` build
    keeps in float (:mod:`ptqcore.build.float_layers`), empty for plain INT8."""

    prepared_onnx: Optional[Path]
    ranges: Optional[Path]
    calibration_images: Optional[np.ndarray] = None
    float_nodes: Tuple[str, ...] = ()
    #: the statistics the ranges came from, and the tensors kept at their observed range (None / empty
    #: where a backend calibrates by itself)
    statistics: Optional[Path] = None
    observed: Tuple[str, ...] = ()


class Runner(abc.ABC):
    """Runs one artifact. Allocates nothing before ``__enter__`` and frees it all in ``__exit__``.

    ``infer(batch)`` takes an (N, 3, H, W) float32 array and returns (N, classes) logits as a
    NumPy array; it returns only when the device has finished, so a clock read around it is
    the end-to-end latency.
    """

    #: Whether :meth:`take_gpu_compute_ms` gives the CUDA-event compute time of each call (GPU runners).
    times_gpu_compute: bool = False
    #: Whether :meth:`census` says how the artifact's layers run (TensorRT engines).
    has_census: bool = False
    #: Whether :meth:`profile_layers` gives the runtime's own per-layer times.
    has_layer_profiler: bool = False

    def take_gpu_compute_ms(self) -> List[float]:
        """The GPU compute times (ms) recorded since the last call, and forget them; only where
        :attr:`times_gpu_compute` (an error elsewhere: there is no such clock)."""
        raise NotImplementedError(f"{type(self).__name__} has no GPU compute clock (times_gpu_compute is False)")

    def census(self) -> Optional[dict]:
        """How the loaded artifact's layers run (call while active); only where :attr:`has_census`."""
        raise NotImplementedError(f"{type(self).__name__} has no layer census (has_census is False)")

    def profile_layers(self, batch: np.ndarray, calls: int, warmup: int, quantized: bool, graph=None):
        """The runtime's per-layer times (a :class:`~ptqcore.measure.layer_profile.LayerProfile`) of
        ``calls`` inferences of ``batch`` after ``warmup`` untimed ones (call while active; only where
        :attr:`has_layer_profiler`). ``quantized``: the artifact is INT8, so float layers are fallbacks;
        ``graph``: the :class:`~ptqcore.build.graph_layers.GraphLayers` of the ONNX file the artifact was
        built from, for runtimes whose artifact is no ONNX file (TensorRT). Never part of a timed
        window: a profiler slows what it watches."""
        raise NotImplementedError(f"{type(self).__name__} has no layer profiler (has_layer_profiler is False)")

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc_info) -> None:
        self.deactivate()

    @abc.abstractmethod
    def activate(self) -> None:
        """Load the artifact and allocate what inference needs."""

    @abc.abstractmethod
    def deactivate(self) -> None:
        """Release everything ``activate`` took."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for ``batch``, computed synchronously."""


class Backend(abc.ABC):
    """Phase 2 and inference for one runtime on one device."""

    #: The name used in options, case ids and records.
    name: str = ""
    #: The precisions this backend builds artifacts for.
    precisions: Tuple[str, ...] = ()
    #: The suffix of the artifact file it writes.
    artifact_suffix: str = ""

    #: True when an artifact serves one batch size only (TensorRT's optimization profile), so
    #: artifacts and their accuracy are kept per batch size.
    per_batch_artifacts: bool = False

    #: True when the INT8 artifact is itself the Q/DQ ONNX file of :meth:`int8_reference_onnx`,
    #: so the reference runs the artifact instead of a second copy.
    int8_artifact_is_reference: bool = False

    def export_settings(self, exporter: str, opset: int) -> Tuple[str, int]:
        """The (exporter, opset) of the ONNX file this backend builds from; the options' by default."""
        return exporter, opset

    def artifact_inputs(self, case: Case, source_sha256: Sequence[str]) -> dict:
        """What a case's artifact depends on besides its source files: the store key's inputs."""
        return {
            "backend": self.name,
            "precision": case.precision.value,
            "calibration": case.recipe or None,
            "sources": list(source_sha256),
            "versions": self.versions(),
        }

    def artifact_details(self, artifact: Path) -> dict:
        """Backend-specific facts about a built artifact for its record (none by default)."""
        return {}

    def int8_recipe(self, case: Case) -> QuantRecipe:
        """How this backend quantizes ``case`` (calibration method, layout): the one place each
        backend calls a :class:`~ptqcore.build.quantize.QuantRecipe` constructor."""
        raise NotImplementedError(f"{self.name} does not quantize to INT8 from ranges")

    def int8_record_fields(self, case: Case) -> dict:
        """How this backend's INT8 model of ``case`` was quantized (``int8_recipe`` and its parts)."""
        return {}

    def int8_needs_ranges(self, case: Case) -> bool:
        """Whether the INT8 build of ``case`` starts from ptqcore's prepared model and ranges (True),
        or only from the calibration images (a backend's own calibrator)."""
        return True

    def int8_reference_onnx(self, case: Case, int8: Int8Inputs, out_path: Path) -> Path:
        """Write the Q/DQ ONNX file the INT8 artifact of ``case`` computes: the one it is built
        from. Run by ONNX Runtime with graph optimizations off it is the fake-quant reference that
        separates what quantization costs from what the backend's kernels add."""
        raise NotImplementedError(f"{self.name} has no INT8 reference model")

    @property
    @abc.abstractmethod
    def device(self) -> str:
        """The device kind its cases run on (``cpu``, ``cuda``, ...)."""

    def unavailable_reason(self) -> Optional[str]:
        """Why no case of this backend can run on this machine, or None if they can."""
        return None

    def unsupported_reason(self, case: Case) -> Optional[str]:
        """Why this one case cannot run (precision not offered, ...), or None."""
        if case.precision.value not in self.precisions:
            return f"{self.name} does not build {case.precision.value} artifacts"
        return None

    @abc.abstractmethod
    def versions(self) -> dict:
        """Library versions the artifacts depend on; part of every cache key."""

    @abc.abstractmethod
    def build(self, case: Case, onnx_path: Path, out_path: Path, int8: Optional[Int8Inputs]) -> Path:
        """Write the artifact for ``case`` from the FP32 ONNX file (or, for INT8, from ``int8``)."""

    @abc.abstractmethod
    def runner(self, case: Case, artifact: Path) -> Runner:
        """A runner for an artifact this backend built."""

"""Phase 1 and phase 2 as small steps, composed in one place for cached artifacts and timed rounds.

Each step turns its inputs into one file. A :class:`Steps` says where the files go:

* with an :class:`~ptqcore.store.ArtifactStore` (cached builds), each output is a store entry keyed
  by the content of what it was made from (the previous step's SHA-256, data fingerprint, settings,
  library versions), reused when that is unchanged, and remembered for the session;
* with only a scratch folder (a timed compression round), each step runs from nothing into it, and
  nothing is hashed or looked up, so the round times the work alone.

The steps, in order (the model followed is Polygraphy's loaders, ``NetworkFromOnnxPath`` ->
``EngineFromNetwork``: small callables that the caller composes)::

    export_onnx        base module -> model.onnx                                  (phase 1)
    int8_inputs        model.onnx -> prepared.onnx -> statistics.npz -> ranges.json (INT8 only, and only
                       for a backend that quantizes from ptqcore's ranges)
    phase_two          the INT8 inputs (timed as ``calibration``) and the backend's build -> artifact

:func:`phase_two` is the one composition of phase 2: the suite's cached artifacts and its timed
rounds both call it, so the two cannot drift apart (a backend that calibrates by itself, such as
TensorRT's implicit entropy path, gets the images and no ONNX Runtime calibration in both).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, List, Mapping, Optional, Tuple

import numpy as np

from ptqcore.backends import Backend, Int8Inputs
from ptqcore.build.calibration import NUM_BINS, RANGES_VERSION, load_statistics
from ptqcore.build.quantize import (
    QuantRecipe,
    graph_outputs,
    prepared_onnx_from_onnx,
    ranges_from_statistics_file,
    read_ranges,
    statistics_from_onnx,
)
from ptqcore.case import Case
from ptqcore.store import ArtifactStore, Entry

#: ``once(key, make)``: the session memo (make once, remember the value or the failure).
Once = Callable[[tuple, Callable[[], object]], object]


@dataclass(frozen=True)
class Output:
    """One step's file, and (cached builds only) the store entry whose SHA-256 keys the next step."""

    path: Path
    entry: Optional[Entry] = None

    @property
    def sha256(self) -> str:
        if self.entry is None:
            raise ValueError(f"{self.path.name} was made in a timed round and is not hashed")
        return self.entry.sha256


class Steps:
    """Where the steps put their outputs: a store (with the session memo ``once``) or a scratch folder."""

    def __init__(self, store: Optional[ArtifactStore] = None, once: Optional[Once] = None,
                 scratch: Optional[Path] = None) -> None:
        if (store is None) == (scratch is None):
            raise ValueError("give a store (cached builds) or a scratch folder (a timed round), not both")
        self.store, self.scratch = store, scratch
        self._once = once or (lambda key, make: make())

    @property
    def cached(self) -> bool:
        return self.store is not None

    def run(self, kind: str, inputs: Callable[[], Mapping], filename: str, build: Callable[[Path], object],
            label: str, memo: Optional[tuple], check: Optional[Callable[[Path], object]] = None) -> Output:
        """``build(path)`` writes the step's file. Cached: the store entry of ``(kind, inputs())``,
        made once per session under ``memo`` (None: the caller memoizes), read back with ``check``
        (default :func:`readable`) so that an entry which verifies but does not load is discarded
        and built again (:meth:`~ptqcore.store.ArtifactStore.load_or_build`); scratch: built into
        the folder, ``inputs`` never called."""
        if self.scratch is not None:
            folder = self.scratch / kind  # one folder per step, as in the store: names never collide
            folder.mkdir(exist_ok=True)
            build(folder / filename)
            return Output(folder / filename)
        store = self.store

        def make() -> Output:
            entry, _ = store.load_or_build(kind, inputs(), filename, build, check or readable, label)
            return Output(entry.path, entry)

        return make() if memo is None else self._once((kind,) + memo, make)


def readable(path: Path) -> None:
    """Raise unless the step file at ``path`` reads back as what its name says: an ONNX model
    (parsed, external data not loaded), the statistics (``.npz``), the ranges (``ranges.json``) or
    JSON. Other files (TensorRT engines) are taken as they verified."""
    import json

    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        onnx.load(str(path), load_external_data=False)
    elif path.suffix == ".npz":
        load_statistics(path)
    elif path.name == "ranges.json":
        read_ranges(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())


def _no_phase(name: str) -> ContextManager:
    return contextlib.nullcontext()


def export_onnx(steps: Steps, model: str, module, base: Optional[Entry], size: int, opset: int, exporter: str,
                torch_version: str) -> Output:
    """Phase 1: the base ``module`` as ONNX at input side ``size`` (keyed by the base file's SHA-256)."""
    from ptqcore.build.export import onnx_from_torch

    return steps.run(
        "onnx", lambda: {"base_sha256": base.sha256, "size": size, "opset": opset, "exporter": exporter,
                         "torch": torch_version},
        "model.onnx", lambda path: onnx_from_torch(module, path, size, opset, exporter),
        f"ONNX of {model} (opset {opset})", memo=(model, exporter, opset),
    )


@dataclass(frozen=True)
class Calibration:
    """What the INT8 steps calibrate on: the images, what identifies them in a cache key, and how."""

    images: np.ndarray
    images_key: str
    recipe: QuantRecipe
    threads: int
    describe: str
    #: ``int8-mixed``: the nodes kept in float (:mod:`ptqcore.study.mixed`); empty for plain INT8
    float_nodes: Tuple[str, ...] = ()
    #: Tensors the user marked to keep their observed range (``--ptq-observed-range``), beside the
    #: graph outputs, which always do (:mod:`ptqcore.build.calibration`)
    observed_tensors: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Int8Steps:
    """The outputs of :func:`int8_inputs`: the prepared model, its statistics and the case's ranges."""

    prepared: Output
    statistics: Output
    ranges: Output
    #: the tensors whose ranges are the observed ones (graph outputs and marked tensors)
    observed: Tuple[str, ...]

    def as_int8_inputs(self, calibration: Calibration) -> Int8Inputs:
        """What a backend's INT8 build takes from these steps and the ``calibration``."""
        return Int8Inputs(self.prepared.path, self.ranges.path, calibration.images, calibration.float_nodes,
                          self.statistics.path, self.observed)


def int8_inputs(steps: Steps, case: Case, source: Output, calibration: Calibration,
                onnxruntime_version: str) -> Int8Steps:
    """ONNX Runtime pre-processing, the one statistics pass over the calibration images (shared by
    every method), and the case's method's ranges (shared by every backend), in which the graph
    outputs and the marked tensors keep their observed range."""
    recipe = calibration.recipe
    images = calibration.images
    source_key = source.sha256 if steps.cached else None
    prepared = steps.run(
        "prepared", lambda: {"source_sha256": source.sha256, "onnxruntime": onnxruntime_version}, "prepared.onnx",
        lambda path: prepared_onnx_from_onnx(source.path, path), f"quantization-ready ONNX of {case.model}",
        memo=(source_key,),
    )
    prepared_key = prepared.sha256 if steps.cached else None
    stats = steps.run(
        "statistics",
        lambda: {"prepared_sha256": prepared.sha256, "data": calibration.images_key,
                 "batch": recipe.calibration_batch_size, "bins": NUM_BINS, "onnxruntime": onnxruntime_version},
        "statistics.npz",
        lambda path: statistics_from_onnx(prepared.path, images, path, recipe.calibration_batch_size,
                                          calibration.threads),
        f"calibration statistics of {case.model} on {calibration.describe} (one pass for every method)",
        memo=(prepared_key, calibration.images_key),
    )
    stats_key = stats.sha256 if steps.cached else None
    observed = tuple(sorted(set(graph_outputs(prepared.path)) | set(calibration.observed_tensors)))
    ranges = steps.run(
        "calibration", lambda: {"statistics_sha256": stats.sha256, "method": recipe.calibration,
                                "percentile": recipe.percentile, "version": RANGES_VERSION,
                                "observed": list(observed)},
        "ranges.json", lambda path: ranges_from_statistics_file(stats.path, recipe, path, observed),
        f"{recipe.calibration} ranges of {case.model}",
        memo=(stats_key, recipe.calibration, recipe.percentile, observed),
    )
    return Int8Steps(prepared, stats, ranges, observed)


def phase_two(steps: Steps, backend: Backend, case: Case, source: Output, calibration: Optional[Calibration],
              onnxruntime_version: str, memo: Optional[tuple], phase: Callable[[str], ContextManager] = _no_phase,
              ) -> Tuple[Output, Optional[float]]:
    """The artifact of ``case`` from the phase 1 file ``source``, and the seconds its INT8 inputs took
    (None for other precisions). For INT8 the inputs come first, inside ``phase("calibration")``:
    the prepared model and ranges for a backend that quantizes from them, else the images alone."""
    int8, calibration_s = None, None
    keys: Callable[[], List[str]] = lambda: [source.sha256]  # noqa: E731
    if case.precision.quantized:
        if calibration is None:
            raise ValueError(f"{case.id}: an INT8 build needs its calibration images")
        with phase("calibration"):
            started = time.perf_counter()
            if backend.int8_needs_ranges(case):
                made = int8_inputs(steps, case, source, calibration, onnxruntime_version)
                int8 = made.as_int8_inputs(calibration)
                keys = lambda: [source.sha256, made.prepared.sha256, made.ranges.sha256]  # noqa: E731
            else:  # the backend calibrates by itself from the images
                int8 = Int8Inputs(None, None, calibration.images, calibration.float_nodes)
                keys = lambda: [source.sha256, calibration.images_key]  # noqa: E731
            calibration_s = time.perf_counter() - started
    float_nodes = {"float_nodes": list(calibration.float_nodes)} if calibration and calibration.float_nodes else {}
    artifact = steps.run(
        "artifact", lambda: {**backend.artifact_inputs(case, keys()), **float_nodes}, f"model{backend.artifact_suffix}",
        lambda path: backend.build(case, source.path, path, int8),
        f"{case.precision.value} {case.backend} artifact of {case.model}"
        + (f" for batch {case.batch_size}" if backend.per_batch_artifacts else ""),
        memo=memo,
    )
    return artifact, calibration_s

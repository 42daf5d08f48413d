"""The suite's session state: options, the case matrix, and every cached build and measurement.

:class:`Suite` knows nothing of pytest. The pytest plugin creates one per session and the
benchmarks ask it for what they need; everything expensive is built once (in memory for the
session, on disk in the :class:`~ptqcore.store.ArtifactStore` across sessions). A failure is
remembered too, so one broken model fails its own cases quickly and leaves the others alone.

Pipeline, per model::

    base model (.pt) --phase 1--> model.onnx --phase 2--> fp32 / fp16 artifact
                                      \\--> prepared.onnx --> calibration ranges --> int8 artifact
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from . import __version__
from .accuracy import Predictions, drop_pp, predict
from .backends import Int8Inputs, Runner, get_backend
from .backends.torch_base import TorchCudaRunner, TorchRunner
from .case import BASE_BACKEND, Case, Precision, build_matrix
from .cpu_isa import detect_cpu_isa, resolve_recipe
from .data import DataSet, load_dataset
from .errors import ModelLoadError, UsageError
from .int8_reference import int8_figures, reference_predictions
from .export import check_onnx, onnx_from_torch
from .models import (
    ModelSpec,
    Preprocess,
    get_model_spec,
    file_model_names,
    file_output_width,
    resolve_model_names,
    spec_from_file,
)
from .options import DIGITS_IMAGE_SIZE, STUDY_IMAGE_SIZE, SuiteOptions, physical_cores
from .calibration import NUM_BINS, RANGES_VERSION
from .quantize import QuantRecipe, prepared_onnx_from_onnx, ranges_from_statistics_file, statistics_from_onnx
from .records import RecordBook
from .store import ArtifactStore, Entry, entry_for_file, file_sha256
from .thresholds import Thresholds, default_thresholds
from .training import make_base_model, recipe_for, replace_head, resolve_weight_mode


@dataclass(frozen=True)
class BaseModel:
    """The PyTorch FP32 reference for one model, and the file it is kept in."""

    module: object
    file: Entry


@dataclass(frozen=True)
class CompressionRound:
    """One compression round: phase 1 and phase 2 seconds (calibration within phase 2 on its own),
    and the monitor's summary per phase."""

    export_s: Optional[float]
    build_s: float
    resources: dict
    #: INT8: pre-processing, the statistics pass and the ranges (part of ``build_s``); else None
    calibration_s: Optional[float] = None


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Suite:
    """Session state for one run (see the module docstring). ``report`` shows progress lines."""

    def __init__(
        self,
        options: SuiteOptions,
        thresholds: Optional[Thresholds] = None,
        report: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.options = options
        self.thresholds = thresholds or default_thresholds()
        self.report = report or (lambda message: None)
        self.store = ArtifactStore(options.cache_dir, self.report)
        self.book = RecordBook(options.dataset)
        self.specs: Dict[str, ModelSpec] = self._resolve_specs()
        #: The CPU's INT8 support, and the ONNX Runtime INT8 layout chosen for it (or forced).
        self.cpu_isa = detect_cpu_isa()
        self.int8_layout = resolve_recipe(options.int8_recipe, self.cpu_isa)
        #: Intra-op threads of ONNX Runtime and PyTorch alike: the option, or the physical cores.
        self.threads = options.threads or physical_cores()
        self._memo: Dict[tuple, object] = {}
        self._backends: Dict[tuple, object] = {}

    # -- the matrix -------------------------------------------------------------------------
    def _resolve_specs(self) -> Dict[str, ModelSpec]:
        specs = {name: get_model_spec(name) for name in resolve_model_names(self.options.models)}
        for item, name in file_model_names(self.options.models).items():
            specs[name] = spec_from_file(item, self.options.file_input_size, self.options.file_mean,
                                         self.options.file_std, name=name)
        return specs

    def check_model_files(self) -> None:
        """Load every user model file once, so a broken file is reported before any case runs."""
        from .training import load_torchscript

        for spec in self.specs.values():
            if spec.source == "onnx":
                check_onnx(spec.path)
            elif spec.source == "torchscript":
                load_torchscript(spec.path)

    def check_output_widths(self) -> None:
        """A :class:`UsageError` before any work when a model's logits are not one column per class
        of the data set (a 1,000-class model on a 10-class folder would score 0.0 and "pass")."""
        for model in self.specs:
            width, data = self._output_width(model), self.dataset(model)
            if width is not None and width != data.num_classes:
                raise UsageError(f"model {model} predicts {width} classes but data set {data.name} has {data.num_classes}",
                                 "give a model with one output per class, or --ptq-weights train/head for a new head")

    def _output_width(self, model: str) -> Optional[int]:
        """The model's number of outputs where it is fixed before training (files, ImageNet weights)."""
        spec = self.specs[model]
        if spec.source in ("onnx", "torchscript"):
            return file_output_width(spec, self.preprocess(model).size)
        return 1000 if resolve_weight_mode(self.options.weights, self.options.dataset) == "imagenet" else None

    def cases(self) -> List[Tuple[Case, Optional[str]]]:
        """Every case of the matrix with the reason it cannot run here (None if it can).

        The PyTorch base runs on the devices of the selected backends (the CPU for ONNX Runtime,
        CUDA for TensorRT), never on whatever the machine happens to have.
        """
        devices = {name: self.backend(name).device for name in self.options.backends}
        matrix = build_matrix(
            list(self.specs), self.options.precisions, self.options.backends, devices,
            self.options.batch_sizes, self.options.calibrations,
        )
        return [(case, self.skip_reason(case)) for case in matrix]

    def skip_reason(self, case: Case) -> Optional[str]:
        reason = self.specs[case.model].unsupported_reason(case.backend, case.precision.value)
        if reason:
            return reason
        if case.backend == BASE_BACKEND:
            return self._base_device_reason(case.device)
        backend = self.backend(case.backend)
        return backend.unavailable_reason() or backend.unsupported_reason(case)

    @staticmethod
    def _base_device_reason(device: str) -> Optional[str]:
        """Why PyTorch cannot run the base on ``device`` here (None when it can)."""
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "PyTorch sees no CUDA GPU, so the base cannot run on cuda"
        return None

    # -- memoisation that remembers failures --------------------------------------------------
    def _once(self, key: tuple, make: Callable[[], object]):
        if key in self._memo:
            value = self._memo[key]
            if isinstance(value, _Failed):
                raise value.error
            return value
        try:
            value = make()
        except Exception as err:
            self._memo[key] = _Failed(err)
            raise
        self._memo[key] = value
        return value

    # -- data --------------------------------------------------------------------------------
    def preprocess(self, model: str) -> Preprocess:
        spec = self.specs[model]
        if spec.source in ("onnx", "torchscript"):
            return spec.preprocess
        size = self.options.image_size or (DIGITS_IMAGE_SIZE if self.options.dataset == "digits" else STUDY_IMAGE_SIZE)
        return spec.preprocess.with_size(size)

    def dataset(self, model: str) -> DataSet:
        preprocess = self.preprocess(model)
        return self._once(("dataset", preprocess), lambda: load_dataset(
            self.options.dataset, preprocess, self.options.data_root,
            self.options.calibration_size, self.options.eval_size, self.options.seed,
        ))

    # -- phase 0: the base model ----------------------------------------------------------------
    def base_model(self, model: str) -> BaseModel:
        return self._once(("base", model), lambda: self._make_base_model(model))

    def _make_base_model(self, model: str) -> BaseModel:
        from .training import load_state_dict_file, load_torchscript, save_state_dict

        spec = self.specs[model]
        if spec.source == "onnx":
            raise ModelLoadError(f"{model} is an ONNX file and has no PyTorch model", "use its fp32 case as the reference")
        if spec.source == "torchscript":
            module = load_torchscript(spec.path)
            file = entry_for_file(spec.path)
            return BaseModel(module, file)
        data = self.dataset(model)
        mode = resolve_weight_mode(self.options.weights, self.options.dataset)
        recipe = recipe_for(mode, self.options.train_epochs, self.options.seed)

        def architecture():
            if mode == "head":
                module = spec.factory(1000)
                replace_head(module, data.num_classes)
                return module
            return spec.factory(1000 if mode == "imagenet" else data.num_classes)

        def build(path: Path) -> None:
            module = make_base_model(spec, data.num_classes, mode, data.train_part, data.train, recipe, self.report,
                                     self.options.threads)
            save_state_dict(module, path)

        inputs = {
            "model": model,
            "weights": mode if mode in ("train", "head", "imagenet") else file_sha256(Path(mode) / f"{model}.pt"),
            "data": data.fingerprint,
            "classes": data.num_classes,
            "recipe": recipe.__dict__ if mode in ("train", "head") else None,
        }
        def load(path: Path):
            module = architecture()
            load_state_dict_file(module, path)
            return module

        entry, module = self.store.load_or_build("base", inputs, "model.pt", build, load,
                                                 f"base model {model} ({mode} on {data.name})")
        return BaseModel(module.eval(), entry)

    # -- phase 1: PyTorch -> ONNX ---------------------------------------------------------------
    def export_settings(self, backend_name: Optional[str] = None) -> Tuple[str, int]:
        """(exporter, opset) of the ONNX file a backend builds from: the options', or the backend's own."""
        if backend_name in (None, BASE_BACKEND):
            return self.options.exporter, self.options.opset
        return self.backend(backend_name).export_settings(self.options.exporter, self.options.opset)

    def onnx(self, model: str, settings: Optional[Tuple[str, int]] = None) -> Entry:
        """Phase 1 for ``model`` with (exporter, opset) ``settings`` (default: the options')."""
        exporter, opset = settings or self.export_settings()
        return self._once(("onnx", model, exporter, opset), lambda: self._make_onnx(model, exporter, opset))

    def _make_onnx(self, model: str, exporter: str, opset: int) -> Entry:
        spec = self.specs[model]
        if spec.source == "onnx":
            check_onnx(spec.path)
            return entry_for_file(spec.path)
        import torch

        base = self.base_model(model)
        size = self.preprocess(model).size
        inputs = {"base_sha256": base.file.sha256, "size": size, "opset": opset, "exporter": exporter, "torch": torch.__version__}
        return self.store.get_or_build(
            "onnx", inputs, "model.onnx",
            lambda path: onnx_from_torch(base.module, path, size, opset, exporter),
            f"ONNX of {model} (opset {opset})",
        )

    def backend(self, name: str, for_timing: bool = False):
        """Backend ``name``; ``for_timing`` gives one that reuses no cache (timed rounds start from nothing)."""
        key = (name, for_timing)
        if key not in self._backends:
            trt = {"workspace_mib": self.options.trt_workspace_mib, "int8_strategy": self.options.trt_int8,
                   "cuda_graph": self.options.trt_cuda_graph}
            cache = None if for_timing else self.options.cache_dir
            self._backends[key] = get_backend(name, self.threads, cache, trt, self.int8_layout)
        return self._backends[key]

    # -- phase 2 ------------------------------------------------------------------------------
    def int8_inputs(self, case: Case, onnx_path: Optional[Path] = None, scratch: Optional[Path] = None) -> Int8Inputs:
        """The INT8 steps after phase 1, in one sequence for cached builds and timed rounds alike:
        pre-processing, the one statistics pass over the calibration images (shared by every
        method), and the method's ranges (shared by every backend).

        With ``scratch`` None every step goes through the store (and the session memo); with a
        folder, every step runs from nothing into it from ``onnx_path`` (a timed round).
        """
        import onnxruntime

        recipe = replace(QuantRecipe.for_onnxruntime_cpu(case.recipe), percentile=self.options.percentile)
        data = self.dataset(case.model)
        images = data.calibration_arrays()
        if scratch is not None:
            prepared = prepared_onnx_from_onnx(onnx_path, scratch / "prepared.onnx")
            stats = statistics_from_onnx(prepared, images, scratch / "statistics.npz", recipe.calibration_batch_size,
                                         self.threads)
            return Int8Inputs(prepared, ranges_from_statistics_file(stats, recipe, scratch / "ranges.json"), images)
        source = self.onnx(case.model, self.export_settings(case.backend))
        ort_version = onnxruntime.__version__
        prepared = self._once(("prepared", source.sha256), lambda: self.store.get_or_build(
            "prepared", {"source_sha256": source.sha256, "onnxruntime": ort_version}, "prepared.onnx",
            lambda path: prepared_onnx_from_onnx(source.path, path), f"quantization-ready ONNX of {case.model}",
        ))
        stats = self._once(("statistics", prepared.sha256), lambda: self.store.get_or_build(
            "statistics",
            {"prepared_sha256": prepared.sha256, "data": data.fingerprint, "batch": recipe.calibration_batch_size,
             "bins": NUM_BINS, "onnxruntime": ort_version},
            "statistics.npz",
            lambda path: statistics_from_onnx(prepared.path, images, path, recipe.calibration_batch_size, self.threads),
            f"calibration statistics of {case.model} on {len(images)} images (one pass for every method)",
        ))
        ranges = self._once(("ranges", stats.sha256, case.recipe), lambda: self.store.get_or_build(
            "calibration", {"statistics_sha256": stats.sha256, "method": recipe.calibration,
                            "percentile": recipe.percentile, "version": RANGES_VERSION},
            "ranges.json", lambda path: ranges_from_statistics_file(stats.path, recipe, path),
            f"{case.recipe} ranges of {case.model}",
        ))
        return Int8Inputs(prepared.path, ranges.path, images)

    def artifact(self, case: Case) -> Entry:
        """The phase 2 artifact for a compressed case, from the cache or built now."""
        return self._once(("artifact",) + self._artifact_identity(case), lambda: self._make_artifact(case))

    def _artifact_identity(self, case: Case) -> tuple:
        """What tells artifacts apart: batch size counts only where the backend builds per batch size."""
        per_batch = case.precision.compressed and self.backend(case.backend).per_batch_artifacts
        return (case.model, case.precision, case.backend, case.device, case.recipe, case.batch_size if per_batch else None)

    def _make_artifact(self, case: Case) -> Entry:
        backend = self.backend(case.backend)
        source = self.onnx(case.model, self.export_settings(case.backend))
        int8, hashes = None, [source.sha256]
        if case.precision is Precision.INT8 and backend.int8_needs_ranges(case):
            int8 = self.int8_inputs(case)
            hashes += [file_sha256(int8.prepared_onnx), file_sha256(int8.ranges)]
        elif case.precision is Precision.INT8:  # the backend calibrates itself from the images
            data = self.dataset(case.model)
            int8, hashes = Int8Inputs(None, None, data.calibration_arrays()), hashes + [data.fingerprint]
        return self.store.get_or_build(
            "artifact", backend.artifact_inputs(case, hashes), f"model{backend.artifact_suffix}",
            lambda path: backend.build(case, source.path, path, int8),
            f"{case.precision.value} {case.backend} artifact of {case.model}"
            + (f" for batch {case.batch_size}" if backend.per_batch_artifacts else ""),
        )

    def new_monitor(self):
        """A fresh :class:`~ptqcore.telemetry.ResourceMonitor` on this machine's sources, or None when off."""
        if not self.options.telemetry:
            return None
        from .telemetry import ResourceMonitor, default_samplers

        interval = self.options.telemetry_interval
        return ResourceMonitor(default_samplers(interval), interval_s=interval, keep_samples=self.options.telemetry_samples)

    def compress_once(self, case: Case) -> CompressionRound:
        """Run phase 1 and phase 2 from scratch into a temporary folder, timed and (optionally) monitored.

        Phase 1 is PyTorch -> ONNX (not run for ONNX files). Phase 2 is everything from the ONNX
        file to a model ready to run: for INT8 pre-processing and calibration on the calibration
        images (monitored as ``calibration``) and quantization; for every precision, loading it
        into its runtime. Nothing is read from or written to the cache, so every round does the
        full work. Sampler start-up happens before the first clock is read.
        """
        backend = self.backend(case.backend, for_timing=True)
        exporter, opset = self.export_settings(case.backend)
        spec = self.specs[case.model]
        size = self.preprocess(case.model).size
        monitor = self.new_monitor()

        def phase(name):
            return monitor.phase(name) if monitor is not None else contextlib.nullcontext()

        with tempfile.TemporaryDirectory(prefix="ptqcore-round-") as scratch, (monitor or contextlib.nullcontext()):
            scratch = Path(scratch)
            export_s: Optional[float] = None
            if spec.has_torch_model:
                module = self.base_model(case.model).module
                with phase("export"):
                    started = time.perf_counter()
                    onnx_path = onnx_from_torch(module, scratch / "model.onnx", size, opset, exporter)
                    export_s = time.perf_counter() - started
            else:
                onnx_path = spec.path
            with phase("build"):
                started = time.perf_counter()
                int8, calibration_s = None, None
                if case.precision is Precision.INT8:
                    with phase("calibration"):
                        calibrated = time.perf_counter()
                        if backend.int8_needs_ranges(case):
                            int8 = self.int8_inputs(case, onnx_path, scratch)
                        else:
                            int8 = Int8Inputs(None, None, self.dataset(case.model).calibration_arrays())
                        calibration_s = time.perf_counter() - calibrated
                artifact = backend.build(case, onnx_path, scratch / f"artifact{backend.artifact_suffix}", int8)
                with backend.runner(case, artifact):
                    pass
                build_s = time.perf_counter() - started
        resources = {name: summary.as_dict() for name, summary in monitor.summaries().items()} if monitor else {}
        return CompressionRound(export_s, build_s, resources, calibration_s)

    # -- inference ----------------------------------------------------------------------------
    def runner(self, case: Case) -> Runner:
        """A fresh (not yet entered) runner for the case."""
        if case.precision is Precision.BASE:
            if case.device == "cuda":
                return TorchCudaRunner(self.base_model(case.model).module)
            return TorchRunner(self.base_model(case.model).module, self.threads)
        return self.backend(case.backend).runner(case, self.artifact(case).path)

    def sample_batch(self, case: Case):
        return self.dataset(case.model).sample_batch(case.batch_size)

    def predictions(self, case: Case) -> Predictions:
        """Top-5 predictions on the evaluation subset, computed once per artifact (batch-independent)."""

        def run() -> Predictions:
            data = self.dataset(case.model)
            self.report(f"evaluating {case.model} {case.precision.value} on {len(data.evaluation)} {data.name} images")
            with self.runner(case) as runner:
                return predict(runner.infer, data.evaluation_batches(self.options.eval_batch_size))

        return self._once(("predictions",) + self._artifact_identity(case), run)

    def int8_reference(self, case: Case) -> Predictions:
        """Predictions of the fake-quant reference of an INT8 case (:mod:`ptqcore.int8_reference`), once."""
        return self._once(("int8-reference",) + self._artifact_identity(case), lambda: reference_predictions(self, case))

    def reference_case(self, case: Case) -> Case:
        """What a case's accuracy drop is measured against: the base, or fp32 for ONNX files."""
        if self.specs[case.model].has_torch_model:
            return Case(case.model, Precision.BASE, BASE_BACKEND, case.device, case.batch_size)
        return Case(case.model, Precision.FP32, case.backend, case.device, case.batch_size)

    def quality(self, case: Case) -> dict:
        """Size and accuracy figures of a case (measured once), also written into its record."""
        return self._once(("quality", case.id), lambda: self._measure_quality(case))

    def _measure_quality(self, case: Case) -> dict:
        predictions = self.predictions(case)
        figures = {"top1": predictions.top1_accuracy, "top5": predictions.top5_accuracy,
                   "eval_images": len(predictions.labels)}
        reference = self.reference_case(case)
        if case.precision is Precision.BASE:
            size = self.base_model(case.model).file.size_bytes
            figures.update(size_bytes=size, size_bytes_base=size, size_reduction=1.0, top1_base=figures["top1"],
                           accuracy_drop_pp=0.0, agreement_top1=1.0, reference="base")
        else:
            artifact = self.artifact(case)
            base_size = (self.base_model(case.model).file.size_bytes if self.specs[case.model].has_torch_model
                         else self.onnx(case.model).size_bytes)
            ref = self.predictions(reference) if reference != case else predictions
            figures.update(
                size_bytes=artifact.size_bytes, size_bytes_base=base_size,
                size_reduction=base_size / artifact.size_bytes, top1_base=ref.top1_accuracy,
                accuracy_drop_pp=drop_pp(ref.top1_accuracy, predictions.top1_accuracy),
                agreement_top1=predictions.agreement_top1(ref), reference=reference.precision.value,
                artifact_sha256=artifact.sha256, artifact_reused=artifact.reused, artifact_path=str(artifact.path),
            )
            figures.update(self.backend(case.backend).artifact_details(artifact.path))
            if case.precision is Precision.INT8:
                figures.update(int8_figures(self, case, predictions, ref))
        self.book.update(case, **figures)
        return figures

    def record_compression(self, case: Case, rounds: List[CompressionRound]) -> None:
        """Medians of the measured rounds, their raw values, and the last round's resources per phase."""
        exports = [r.export_s for r in rounds if r.export_s is not None]
        builds = [r.build_s for r in rounds]
        calibrations = [r.calibration_s for r in rounds if r.calibration_s is not None]
        resources = dict(self.book.record(case).figures.get("resources") or {})
        if rounds:
            resources.update({k: v for k, v in rounds[-1].resources.items() if k != "total"})
        self.book.update(
            case,
            export_s=statistics.median(exports) if exports else None,
            build_s=statistics.median(builds) if builds else None,
            export_s_rounds=exports or None,
            build_s_rounds=builds or None,
            calibration_s=statistics.median(calibrations) if calibrations else None,
            calibration_s_rounds=calibrations or None,
            resources=resources or None,
        )

    def environment(self) -> dict:
        """Versions and settings every record depends on (for ``machine_info``)."""
        import importlib

        versions = {"ptqcore": __version__}
        for name in ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "sklearn"):
            try:
                versions[name] = importlib.import_module(name).__version__
            except ImportError:
                versions[name] = None
        return {"versions": versions, "threads": self.threads,
                "cpu_isa": self.cpu_isa.as_dict(), "int8_recipe": self.int8_layout,
                "int8_recipe_option": self.options.int8_recipe}

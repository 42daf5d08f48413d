"""The suite's session state: options, the case matrix, and every cached build and measurement of one case.

:class:`Suite` knows nothing of pytest, and nothing of what looks across cases or layers (the INT8
fake-quant reference, sensitivity, the ``int8-mixed`` search, technique figures): that is
:class:`ptqcore.study.session.Study`, which extends it through two hooks, :meth:`Suite.float_layers`
and :meth:`Suite.study_figures`. The pytest plugin creates one per session and the
benchmarks ask it for what they need; everything expensive is built once (in memory for the
session, on disk in the :class:`~ptqcore.store.ArtifactStore` across sessions). A failure is
remembered too, so one broken model fails its own cases quickly and leaves the others alone.

Pipeline, per model (the steps and their composition: :mod:`ptqcore.pipeline`)::

    base model (.pt) --phase 1--> model.onnx --phase 2--> fp32 / fp16 artifact
                                      \\--> prepared.onnx --> calibration ranges --> int8 artifact
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ptqcore import __version__
from ptqcore.backends import Int8Inputs, Runner, get_backend
from ptqcore.build.export import check_onnx
from ptqcore.build.kernel_probe import probe_record, probe_this_cpu, resolve_recipe
from ptqcore.case import BASE_BACKEND, DEFAULT_TECHNIQUE, Case, Precision, build_matrix
from ptqcore.cpu_isa import detect_cpu_isa, physical_cores
from ptqcore.errors import ModelLoadError
from ptqcore.measure.accuracy import Predictions, drop_pp, predict
from ptqcore.measure.timed_rounds import CompressionRound, WarmUps, compression_figures, run_round
from ptqcore.models.class_map import dataset_for_model, output_width, trains_on_data
from ptqcore.models.data import DataSet, load_dataset
from ptqcore.models.registry import (
    ModelSpec,
    Preprocess,
    check_onnx_input,
    file_model_names,
    get_model_spec,
    load_torchscript,
    resolve_model_names,
    spec_from_file,
)
from ptqcore.models.technique_models import technique_base, unsupported_reason
from ptqcore.models.techniques import technique_names
from ptqcore.models.training import WEIGHT_MODES, make_base_model, recipe_for, replace_head, resolve_weight_mode
from ptqcore.options.suite_options import DIGITS_IMAGE_SIZE, STUDY_IMAGE_SIZE, SuiteOptions
from ptqcore.options.thresholds import Thresholds, default_thresholds
from ptqcore.pipeline import Calibration, Output, Steps, export_onnx, int8_inputs, phase_two
from ptqcore.records import RecordBook
from ptqcore.store import ArtifactStore, Entry, entry_for_file, file_sha256


@dataclass(frozen=True)
class BaseModel:
    """The PyTorch FP32 reference for one model, and the file it is kept in."""

    module: object
    file: Entry


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
        #: The INT8 kernel self-test (:mod:`ptqcore.build.kernel_probe`, once per process): run only for ``auto``.
        self.kernel_probe = probe_this_cpu() if options.int8_recipe == "auto" else None
        self.int8_layout = resolve_recipe(options.int8_recipe, self.cpu_isa, self.kernel_probe)
        #: Intra-op threads of ONNX Runtime and PyTorch alike: the option, or the physical cores.
        self.threads = options.threads or physical_cores()
        self._memo: Dict[tuple, object] = {}
        #: Where cached builds put each step's output (:mod:`ptqcore.pipeline`): the store, once per session.
        self.steps = Steps(self.store, once=self.once)
        self._backends: Dict[tuple, object] = {}
        self._warmups = WarmUps(options.compress_warmup)
        #: The run's technique names (:mod:`ptqcore.models.techniques`): ``("ptq",)`` unless asked for more.
        self.techniques = technique_names(options.techniques, options.prune_levels, options.kd_student)

    # -- the matrix -------------------------------------------------------------------------
    def _resolve_specs(self) -> Dict[str, ModelSpec]:
        specs = {name: get_model_spec(name) for name in resolve_model_names(self.options.models)}
        for item, name in file_model_names(self.options.models).items():
            specs[name] = spec_from_file(item, self.options.file_input_size, self.options.file_mean,
                                         self.options.file_std, name=name)
        return specs

    def check_inputs(self) -> None:
        """Before any case runs, a :class:`~ptqcore.errors.PtqError` for what would fail every case:
        a cache folder that cannot be written, a user model file that does not load or whose fixed
        input does not fit the run, a ``--ptq-weights`` folder that is missing or lacks a model's ``.pt``."""
        from ptqcore.models.training import check_checkpoint

        self.store.check_writable()
        for spec in self.specs.values():
            if spec.source == "onnx":
                check_onnx_input(spec, check_onnx(spec.path), spec.preprocess.size)
            elif spec.source == "torchscript":
                load_torchscript(spec.path)
        mode = self.weight_mode()
        if mode not in WEIGHT_MODES:
            for spec in self.specs.values():
                if spec.trainable:
                    check_checkpoint(mode, spec.name)

    def check_output_widths(self) -> None:
        """Every model's data set now: a :class:`UsageError` before any work when a model's outputs cannot
        be matched to the data set's classes (a 1,000-class model on 10 folders would score 0.0 and "pass")."""
        for model in self.specs:
            self.dataset(model)

    def cases(self) -> List[Tuple[Case, Optional[str]]]:
        """Every case of the matrix with the reason it cannot run here (None if it can).

        The PyTorch base runs on the devices of the selected backends (the CPU for ONNX Runtime,
        CUDA for TensorRT), never on whatever the machine happens to have.
        """
        devices = {name: self.backend(name).device for name in self.options.backends}
        matrix = build_matrix(
            list(self.specs), self.options.precisions, self.options.backends, devices,
            self.options.batch_sizes, self.options.calibrations, self.options.calibration_sizes, self.techniques,
        )
        return [(case, self.skip_reason(case)) for case in matrix]

    def skip_reason(self, case: Case) -> Optional[str]:
        reason = self.specs[case.model].unsupported_reason(case.backend, case.precision.value)
        reason = reason or unsupported_reason(self.specs[case.model], case)
        if reason:
            return reason
        backend = self.backend(case.backend)
        return backend.unavailable_reason() or backend.unsupported_reason(case)

    # -- memoisation that remembers failures --------------------------------------------------
    def once(self, key: tuple, make: Callable[[], object]):
        """``make()`` once per ``key`` in this session: its value, or the error it raised, again after."""
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
        """The data set as ``model`` sees it: split and labelled for it (:func:`~ptqcore.models.class_map.dataset_for_model`)."""
        def make() -> DataSet:
            spec, preprocess, mode = self.specs[model], self.preprocess(model), self.weight_mode()
            data = self.load_data(preprocess, trains_on_data(spec, mode))
            return dataset_for_model(data, model, output_width(spec, preprocess.size, mode), self.options.class_map,
                                     self.report)

        return self.once(("dataset", model), make)

    def weight_mode(self) -> str:
        """Where the base models' weights come from (:func:`~ptqcore.models.training.resolve_weight_mode`)."""
        return resolve_weight_mode(self.options.weights, self.options.dataset)

    def load_data(self, preprocess: Preprocess, trains: bool) -> DataSet:
        """The data set loaded once per preprocessing and split (``trains``: see :func:`~ptqcore.models.data.load_dataset`)."""
        return self.once(("data", preprocess, trains), lambda: load_dataset(
            self.options.dataset, preprocess, self.options.data_root,
            self.options.calibration_sizes, self.options.eval_size, self.options.seed, trains,
        ))

    # -- phase 0: the base model ----------------------------------------------------------------
    def base_model(self, model: str, technique: str = DEFAULT_TECHNIQUE) -> BaseModel:
        """The PyTorch model phase 1 starts from: the model as trained, or what ``technique`` made of it."""
        if technique != DEFAULT_TECHNIQUE:
            return self.once(("base", model, technique), lambda: BaseModel(*technique_base(
                model, technique, self.base_model(model), self.dataset(model), self.options, self.store, self.report)))
        return self.once(("base", model), lambda: self._make_base_model(model))

    def _make_base_model(self, model: str) -> BaseModel:
        from ptqcore.models.training import load_state_dict_file, save_state_dict

        spec = self.specs[model]
        if spec.source == "onnx":
            raise ModelLoadError(f"{model} is an ONNX file and has no PyTorch model", "use its fp32 case as the reference")
        if spec.source == "torchscript":
            module = load_torchscript(spec.path)
            file = entry_for_file(spec.path)
            return BaseModel(module, file)
        data = self.dataset(model)
        mode = self.weight_mode()
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
        if backend_name is None:
            return self.options.exporter, self.options.opset
        return self.backend(backend_name).export_settings(self.options.exporter, self.options.opset)

    def onnx(self, model: str, settings: Optional[Tuple[str, int]] = None, technique: str = DEFAULT_TECHNIQUE) -> Entry:
        """Phase 1 for ``model`` (as ``technique`` made it) with (exporter, opset) ``settings`` (default:
        the options'); an ONNX model file is its own phase 1, checked once."""
        exporter, opset = settings or self.export_settings()
        spec = self.specs[model]
        if spec.source == "onnx":
            def checked() -> Entry:
                check_onnx(spec.path)
                return entry_for_file(spec.path)

            return self.once(("onnx-file", model), checked)
        import torch

        base = self.base_model(model, technique)
        name = model if technique == DEFAULT_TECHNIQUE else f"{model}-{technique}"
        return export_onnx(self.steps, name, base.module, base.file, self.preprocess(model).size, opset, exporter,
                           torch.__version__).entry

    def backend(self, name: str, for_timing: bool = False):
        """Backend ``name``; ``for_timing`` gives one that reuses no cache (timed rounds start from nothing)."""
        key = (name, for_timing)
        if key not in self._backends:
            trt = {"workspace_mib": self.options.trt_workspace_mib, "int8_strategy": self.options.trt_int8,
                   "cuda_graph": self.options.trt_cuda_graph, "dla_core": self.options.trt_dla}
            cache = None if for_timing else self.options.cache_dir
            self._backends[key] = get_backend(name, self.threads, cache, trt, self.int8_layout, self.options.ort_device)
        return self._backends[key]

    # -- phase 2 ------------------------------------------------------------------------------
    def calibration(self, case: Case) -> Calibration:
        """What an INT8 case calibrates on (its images and their fingerprint) and how (its backend's recipe)."""
        recipe = replace(self.backend(case.backend).int8_recipe(case), percentile=self.options.percentile)
        data = self.dataset(case.model)
        images = data.calibration_arrays(case.calibration_size)
        return Calibration(images, data.calibration_fingerprint(case.calibration_size), recipe, self.threads,
                           f"{len(images)} images", self.float_layers(case), self.options.observed_tensors)

    def float_layers(self, case: Case) -> tuple:
        """The nodes the INT8 build of ``case`` keeps in float: none here. A hook: the study layer
        (:class:`~ptqcore.study.session.Study`) chooses them for ``int8-mixed`` cases."""
        if case.precision is Precision.INT8_MIXED:
            raise NotImplementedError(f"{case.id}: int8-mixed chooses its float layers in ptqcore.study.session.Study")
        return ()

    def _source(self, case: Case) -> Output:
        source = self.onnx(case.model, self.export_settings(case.backend), case.technique)
        return Output(source.path, source)

    def int8_inputs(self, case: Case) -> Int8Inputs:
        """The cached INT8 inputs of ``case`` (:func:`ptqcore.pipeline.int8_inputs`): prepared model, ranges, images."""
        import onnxruntime

        calibration = self.calibration(case)
        made = int8_inputs(self.steps, case, self._source(case), calibration, onnxruntime.__version__)
        return made.as_int8_inputs(calibration)

    def artifact(self, case: Case) -> Entry:
        """The phase 2 artifact for a compressed case, from the cache or built now."""
        return self.once(("artifact",) + self.artifact_identity(case), lambda: self._make_artifact(case))

    def artifact_identity(self, case: Case) -> tuple:
        """What tells artifacts apart: batch size counts only where the backend builds per batch size."""
        batch = case.batch_size if case.precision.compressed and self.backend(case.backend).per_batch_artifacts else None
        return (case.model, case.precision, case.backend, case.device, case.recipe, case.calibration_size, batch,
                case.technique)

    def _make_artifact(self, case: Case) -> Entry:
        import onnxruntime

        calibration = self.calibration(case) if case.precision.quantized else None
        artifact, _ = phase_two(self.steps, self.backend(case.backend), case, self._source(case), calibration,
                                onnxruntime.__version__, memo=None)
        return artifact.entry

    def new_monitor(self):
        """A fresh :class:`~ptqcore.measure.telemetry.ResourceMonitor` on this machine's sources, or None when off."""
        if not self.options.telemetry:
            return None
        from ptqcore.measure.telemetry import ResourceMonitor, default_samplers

        interval = self.options.telemetry_interval
        return ResourceMonitor(default_samplers(interval), interval_s=interval, keep_samples=self.options.telemetry_samples)

    def _round(self, round_once: Callable[[Path, Callable], CompressionRound]) -> CompressionRound:
        return run_round(self.new_monitor(), round_once)

    def warmup_rounds(self, case: Case, phase: int) -> int:
        """Untimed rounds before the timed ones of ``case``'s phase 1 or 2: ``--ptq-compress-warmup``
        for the session's first of that kind of work, else 0 (:mod:`ptqcore.measure.timed_rounds`)."""
        if phase == 1:
            return self._warmups.due((1,) + self.export_settings(case.backend))
        return self._warmups.due((2, case.backend, case.device, case.precision.value))

    def phase_one_rounds(self, case: Case) -> List[CompressionRound]:
        """Phase 1 (PyTorch -> ONNX) timed from scratch, :meth:`warmup_rounds` untimed rounds then
        ``--ptq-compress-rounds`` measured ones (returned), once per model and (exporter, opset)
        in a session. Every precision's phase 2 starts from the same ONNX file, as in the study (one
        ONNX export per model, then one engine per precision), so every precision's record carries
        these rounds' ``export_s``. Empty for an ONNX model file (it is its own phase 1). A technique
        (:mod:`ptqcore.models.techniques`) exports its own model: once per model and technique."""
        settings = self.export_settings(case.backend)
        if not self.specs[case.model].has_torch_model:
            return []

        def measure() -> List[CompressionRound]:
            import torch

            module, size = self.base_model(case.model, case.technique).module, self.preprocess(case.model).size

            def export_round(scratch: Path, phase) -> CompressionRound:
                with phase("export"):
                    started = time.perf_counter()
                    export_onnx(Steps(scratch=scratch), case.model, module, None, size, settings[1], settings[0],
                                torch.__version__)
                    return CompressionRound(time.perf_counter() - started, None, {})

            warmup = self.warmup_rounds(case, phase=1)
            rounds = [self._round(export_round) for _ in range(warmup + self.options.compress_rounds)]
            return rounds[warmup:]

        return self.once(("phase-one-rounds", case.model, case.technique) + settings, measure)

    def compress_once(self, case: Case) -> CompressionRound:
        """Run phase 2 from scratch into a temporary folder, timed and (optionally) monitored.

        Phase 2 is everything from the phase 1 ONNX file to a model ready to run: for INT8
        pre-processing and calibration on the calibration images (monitored as ``calibration``) and
        quantization; for every precision, loading it into its runtime. The ONNX file is made (or
        read from the cache) before the clock starts; nothing is read from or written to the cache
        inside the round, so every round does the full work. Sampler start-up happens before the
        first clock is read. Phase 1 is timed by :meth:`phase_one_rounds`.
        """
        import onnxruntime

        backend = self.backend(case.backend, for_timing=True)
        source = self._source(case)
        calibration = self.calibration(case) if case.precision.quantized else None

        def build_round(scratch: Path, phase) -> CompressionRound:
            with phase("build"):
                started = time.perf_counter()
                artifact, calibration_s = phase_two(Steps(scratch=scratch), backend, case, source, calibration,
                                                    onnxruntime.__version__, memo=None, phase=phase)
                with backend.runner(case, artifact.path):
                    pass
                return CompressionRound(None, time.perf_counter() - started, {}, calibration_s)

        return self._round(build_round)

    # -- inference ----------------------------------------------------------------------------
    def runner(self, case: Case) -> Runner:
        """A fresh (not yet entered) runner for the case."""
        artifact = (self.base_model(case.model, case.technique).module if case.precision is Precision.BASE
                    else self.artifact(case).path)
        return self.backend(case.backend).runner(case, artifact)

    def sample_batch(self, case: Case):
        return self.dataset(case.model).sample_batch(case.batch_size)

    def predictions(self, case: Case) -> Predictions:
        """Top-5 predictions on the evaluation subset, computed once per artifact (batch-independent)."""

        def run() -> Predictions:
            data = self.dataset(case.model)
            self.report(f"evaluating {case.model} {case.precision.value} on {len(data.evaluation)} {data.name} images")
            with self.runner(case) as runner:
                return predict(runner.infer, data.evaluation_batches(self.options.eval_batch_size))

        return self.once(("predictions",) + self.artifact_identity(case), run)

    def reference_case(self, case: Case) -> Case:
        """What a case's accuracy drop is measured against: the base, or fp32 for ONNX files."""
        if self.specs[case.model].has_torch_model:
            return Case(case.model, Precision.BASE, BASE_BACKEND, case.device, case.batch_size)
        return Case(case.model, Precision.FP32, case.backend, case.device, case.batch_size)

    def quality(self, case: Case) -> dict:
        """Size and accuracy figures of a case (measured once), also written into its record."""
        return self.once(("quality", case.id), lambda: self._measure_quality(case))

    def _measure_quality(self, case: Case) -> dict:
        predictions = self.predictions(case)
        figures = {"top1": predictions.top1_accuracy, "top5": predictions.top5_accuracy,
                   "eval_images": len(predictions.labels)}
        reference = self.reference_case(case)
        if case.precision is Precision.BASE and case.technique == DEFAULT_TECHNIQUE:
            size = self.base_model(case.model).file.size_bytes
            figures.update(size_bytes=size, size_bytes_base=size, size_reduction=1.0, top1_base=figures["top1"],
                           accuracy_drop_pp=0.0, agreement_top1=1.0, reference="base")
        else:
            artifact = self.artifact(case) if case.precision.compressed else self.base_model(case.model, case.technique).file
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
            if case.precision.compressed:
                figures.update(self.backend(case.backend).artifact_details(artifact.path))
        figures.update(self.study_figures(case, figures))
        self.book.update(case, **figures)
        return figures

    def study_figures(self, case: Case, figures: dict) -> dict:
        """What the study layer adds to a case's ``figures`` (INT8 split, ``int8-mixed`` search,
        technique figures): nothing here. A hook: :class:`~ptqcore.study.session.Study` fills it."""
        return {}

    def record_compression(self, case: Case, rounds: List[CompressionRound]) -> None:
        """The case's measured phase 2 ``rounds`` and its model's phase 1 rounds (:meth:`phase_one_rounds`)
        into its record (:func:`ptqcore.measure.timed_rounds.compression_figures`)."""
        resources = self.book.record(case).figures.get("resources")
        self.book.update(case, **compression_figures(self.phase_one_rounds(case), rounds, resources))

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
                "cpu_isa": {**self.cpu_isa.as_dict(), "kernel_probe": probe_record(self.cpu_isa, probe_this_cpu())},
                "int8_recipe": self.int8_layout,
                "int8_recipe_option": self.options.int8_recipe}

"""Everything a run depends on, as one frozen value: :class:`SuiteOptions`.

Every option is declared once, here: a field, its default and (for those the command line sets) its
``--ptq-*`` flag. The pytest plugin generates its options from these declarations; library users
build a :class:`SuiteOptions` directly.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ptqcore.backends import BACKEND_NAMES
from ptqcore.backends.onnxruntime import ORT_DEVICES
from ptqcore.build.export import DEFAULT_OPSET, EXPORTERS
from ptqcore.case import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_PRECISIONS,
    PRECISION_NAMES,
    Precision,
)
from ptqcore.cpu_isa import INT8_RECIPE_CHOICES
from ptqcore.models.data import DATASETS, DEFAULT_MAX_EVAL
from ptqcore.models.registry import IMAGENET_MEAN, IMAGENET_STD
from ptqcore.models.training import DEFAULT_EPOCHS
from ptqcore.options import parsers as types
from ptqcore.options import technique_parsers as technique_types
from ptqcore.store import default_cache_dir

#: Input side used when the data set is digits (8x8 scans upsampled): big enough for every study
#: model's downsampling, small enough that training all six on 2 CPU cores takes minutes.
DIGITS_IMAGE_SIZE = 32
#: The study fed every model 224x224 images.
STUDY_IMAGE_SIZE = 224


@dataclass(frozen=True)
class Flag:
    """How a :class:`SuiteOptions` field is set from the command line: ``--ptq-*`` flag, value parser
    (:mod:`ptqcore.options.parsers`), and help. ``action`` is argparse's (``store_true`` /
    ``store_false`` flags take no value). The field's default is the option's default."""

    name: str
    parse: Optional[Callable[[str], object]] = None
    metavar: Optional[str] = None
    help: str = ""
    choices: Optional[Tuple[str, ...]] = None
    action: Optional[str] = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


def _option(default=MISSING, flag: Optional[Flag] = None, factory=MISSING):
    metadata = {"flag": flag} if flag is not None else {}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _flag(name: str, parse=None, metavar=None, help="", **kwargs) -> Flag:
    return Flag(name, parse, metavar, help, **kwargs)


@dataclass(frozen=True)
class SuiteOptions:
    """Everything a run depends on. Each field is declared once, with its default and, where the
    command line sets it, its :class:`Flag`: the pytest plugin generates its options from these
    declarations (:func:`flags`) and builds the value back with :func:`options_from_values`."""

    models: Tuple[str, ...] = _option(("study",), _flag(
        "--ptq-models", types.models, "LIST", "models, presets (study, quick, tiny, all), globs ('mobilenet*'),"
        " torchvision names or .onnx/.pt files, comma-separated (default: {default} = the study's six)"))
    precisions: Tuple[Precision, ...] = _option(DEFAULT_PRECISIONS, _flag(
        "--ptq-precisions", types.precisions, "LIST", f"precisions to run: {', '.join(PRECISION_NAMES)} (default:"
        " {default}; int8-mixed keeps the fewest layers in float that bring a"
        " failing INT8 case within its limit)"))
    backends: Tuple[str, ...] = _option(("onnxruntime",), _flag(
        "--ptq-backends", types.choices(BACKEND_NAMES), "LIST",
        f"compression backends: {', '.join(BACKEND_NAMES)} (default: {{default}}); base always runs on PyTorch"))
    batch_sizes: Tuple[int, ...] = _option((1,), _flag(
        "--ptq-batch-sizes", types.ints_at_least(1), "LIST", "batch sizes to time (default: {default})"))
    dataset: str = _option("digits", _flag(
        "--ptq-dataset", help="data set (default: {default}, offline)", choices=DATASETS))
    data_root: Optional[Path] = _option(None, _flag(
        "--ptq-data-root", types.existing_dir, "DIR", "folder of the data set (imagefolder, cifar100, flowers102)"))
    #: JSON file of class folder -> output index for models with fixed outputs (:mod:`ptqcore.models.class_map`)
    class_map: Optional[Path] = _option(None, _flag(
        "--ptq-class-map", types.class_map_file, "FILE", "JSON object of class folder -> output index for models with"
        " fixed outputs (model files, --ptq-weights imagenet) on an imagefolder (default where the widths differ:"
        " numeric folder names, or ImageNet WordNet ids)"))
    #: calibration image counts: one INT8 case per method x size, subsets nested (:mod:`ptqcore.models.data`)
    calibration_sizes: Tuple[int, ...] = _option((DEFAULT_CALIBRATION_SIZE,), _flag(
        "--ptq-calibration-size", types.ints_at_least(1), "LIST", "calibration images for INT8, e.g. 32,128,512: one"
        " INT8 case per method x size, nested subsets, one statistics pass per size"
        " (default: {default}, as the study)"))
    eval_size: Optional[int] = _option(None, _flag(
        "--ptq-eval-size", types.int_at_least(1), "N",
        f"evaluation images (default: the whole held-out split, at most {DEFAULT_MAX_EVAL})"))
    eval_batch_size: int = _option(16, _flag(
        "--ptq-eval-batch-size", types.int_at_least(1), "N", "batch size of the accuracy pass (default: {default})"))
    calibrations: Tuple[str, ...] = _option((DEFAULT_CALIBRATION,), _flag(
        "--ptq-calibration", types.calibrations, "LIST",
        f"INT8 calibration methods, one INT8 case each, all from one statistics pass: {', '.join(CALIBRATION_METHODS)}"
        f" or all (default: {{default}}, the study's: TensorRT's entropy calibrator)"))
    percentile: float = _option(99.999, _flag(
        "--ptq-percentile", types.percentile, "P",
        "the percentile of |x| the percentile method clips at (default: {default})"))
    observed_tensors: Tuple[str, ...] = _option((), _flag(
        "--ptq-observed-range", types.names, "TENSORS",
        "tensors (comma-separated ONNX names) that keep their observed min/max range whatever the calibration"
        " method, beside the graph outputs, which always do (default: {default})"))
    int8_recipe: str = _option("auto", _flag(
        "--ptq-int8-recipe", help="ONNX Runtime INT8 layout: auto (chosen for this CPU: u8s8 with VNNI,"
        " u8s8-reduce-range on x86 without VNNI, s8s8 on ARM64), u8s8, s8s8 or u8s8-reduce-range (default: {default})",
        choices=INT8_RECIPE_CHOICES))
    cache_dir: Path = _option(flag=_flag(
        "--ptq-cache-dir", types.path, "DIR", "artifact cache (default: $PTQCORE_CACHE_DIR or ~/.cache/ptqcore)"),
        factory=default_cache_dir)
    weights: str = _option("auto", _flag(
        "--ptq-weights", metavar="MODE", help="base weights: auto, train, head (the study's frozen ImageNet backbone"
        " + new head), imagenet, or a directory of <model>.pt state dicts (default: {default} = train on digits, head"
        " elsewhere)"))
    image_size: Optional[int] = _option(None, _flag(
        "--ptq-image-size", types.int_at_least(8), "PX", f"model input side (default: {DIGITS_IMAGE_SIZE} on digits, {STUDY_IMAGE_SIZE} elsewhere)"))
    opset: int = _option(DEFAULT_OPSET, _flag(
        "--ptq-opset", types.int_at_least(7), "N", "ONNX opset of phase 1 (default: {default})"))
    exporter: str = _option("legacy", _flag(
        "--ptq-exporter", help="torch ONNX exporter (default: {default})", choices=EXPORTERS))
    compress_rounds: int = _option(3, _flag(
        "--ptq-compress-rounds", types.int_at_least(1), "N", "timed compression rounds per case (default: {default}, so"
        " that the default sweep stays within 5 minutes on a warm cache; the study used 5)"))
    compress_warmup: int = _option(1, _flag(
        "--ptq-compress-warmup", types.int_at_least(0), "N", "untimed compression rounds before the session's"
        " first timed round of each kind of work: phase 1; phase 2 per backend, device and precision (default: {default})"))
    latency_min_rounds: int = _option(20, _flag(
        "--ptq-latency-min-rounds", types.int_at_least(1), "N", "at least this many timed inferences (default: {default})"))
    latency_min_seconds: float = _option(1.0, _flag(
        "--ptq-latency-min-time", types.positive_float, "S", "and at least this many seconds of them (default: {default})"))
    latency_max_rounds: int = 100_000
    warmup_calls: int = 10
    warmup_seconds: float = _option(0.5, _flag(
        "--ptq-warmup-time", types.positive_float, "S", "warm-up before timing, at least 10 calls (default: {default} s)"))
    threads: int = _option(0, _flag(
        "--ptq-threads", types.int_at_least(0), "N",
        "intra-op threads for ONNX Runtime and PyTorch alike (default: {default} = the physical cores; training then"
        " chooses between them and 1 thread step by step, from measured step times)"))
    seed: int = _option(0, _flag("--ptq-seed", int, "N", "seed for splits and training (default: {default})"))
    #: None: the weight mode's default (``ptqcore.models.training.DEFAULT_EPOCHS``: 5 from scratch, 8 for a head)
    train_epochs: Optional[int] = _option(None, _flag(
        "--ptq-train-epochs", types.int_at_least(1), "N", f"training epochs (default: {DEFAULT_EPOCHS['train']} from scratch, {DEFAULT_EPOCHS['head']} for a head)"))
    sensitivity: bool = _option(False, _flag(
        "--ptq-sensitivity", help="rank the layers of every INT8 case by the error their quantization adds"
        " (record field sensitivity, computed by test_accuracy_drop; done anyway for an INT8 case that fails its"
        " accuracy-drop limit)",
        action="store_true"))
    profile_layers: bool = _option(False, _flag(
        "--ptq-profile-layers", help="after each case's timed latency rounds (never inside them), run it under the"
        " runtime's own per-layer profiler (ONNX Runtime's, TensorRT's IProfiler): record field layer_profile, the"
        " full table in a CSV beside the JSON, and for INT8 where its time goes against FP32 (CPU) / FP16 (GPU)",
        action="store_true"))
    trt_workspace_mib: Optional[int] = _option(None, _flag(
        "--ptq-trt-workspace", types.int_at_least(1), "MIB",
        "TensorRT builder workspace limit (default: TensorRT's; a Jetson shares memory with the CPU)"))
    trt_int8: str = _option("explicit", _flag(
        "--ptq-trt-int8", help="TensorRT INT8: explicit Q/DQ from ptqcore's calibration (default), or the study's"
        " implicit entropy calibrator (TensorRT < 11 only)", choices=("explicit", "implicit-entropy")))
    ort_device: str = _option("cpu", _flag(
        "--ptq-ort-device", help="where ONNX Runtime runs: cpu, cuda (CUDA execution provider) or tensorrt (its"
        " TensorRT execution provider); GPU devices need onnxruntime-gpu and quantize INT8 symmetric S8S8"
        " (default: {default})", choices=tuple(ORT_DEVICES)))
    trt_dla: Optional[int] = _option(None, _flag(
        "--ptq-trt-dla", types.int_at_least(0), "CORE", "build the TensorRT FP16 and INT8 engines for this DLA core,"
        " with GPU fallback for the layers it cannot run (skipped with the reason on boards without DLA; fp32"
        " cases are skipped: DLA has no FP32)"))
    trt_cuda_graph: bool = _option(False, _flag(
        "--ptq-trt-cuda-graph", help="replay TensorRT inference from a captured CUDA graph", action="store_true"))
    telemetry: bool = _option(True, _flag(
        "--ptq-no-telemetry", help="do not sample CPU / GPU / memory / power during compression and inference",
        action="store_false"))
    telemetry_interval: float = _option(0.2, _flag(
        "--ptq-telemetry-interval", types.positive_float, "S",
        "resource sampling interval (default: {default} s; jtop is held to >= 0.5 s)"))
    telemetry_samples: bool = _option(False, _flag(
        "--ptq-telemetry-samples", help="keep the raw timestamped telemetry samples of every phase in the records"
        " (for plots)", action="store_true"))
    file_input_size: int = _option(224, _flag(
        "--ptq-model-input-size", types.int_at_least(8), "PX", "input side of .onnx/.pt model files (default: {default})"))
    file_mean: Tuple[float, float, float] = _option(IMAGENET_MEAN, _flag(
        "--ptq-model-mean", types.three_floats, "R,G,B", "normalization mean of model files (default: ImageNet)"))
    file_std: Tuple[float, float, float] = _option(IMAGENET_STD, _flag(
        "--ptq-model-std", types.three_positive_floats, "R,G,B", "normalization std of model files (default: ImageNet)"))
    #: compression techniques beside PTQ (kinds; :mod:`ptqcore.models.techniques` expands them to case names)
    techniques: Tuple[str, ...] = _option(("ptq",), _flag(
        "--ptq-techniques", technique_types.kinds, "LIST", "compression techniques, one set of cases each: ptq (the"
        " model as trained), prune (unstructured pruning at --ptq-prune-levels), kd (a student distilled from"
        " the model), or all (default: {default}; prune and kd train)"))
    prune_levels: Tuple[int, ...] = _option((50, 80), _flag(
        "--ptq-prune-levels", technique_types.prune_levels, "LIST", "percent of Conv/Linear weights pruned (global"
        " L1 magnitude), one technique each: prune50, prune80 (default: {default})"))
    prune_finetune_epochs: int = _option(1, _flag(
        "--ptq-prune-finetune-epochs", types.int_at_least(0), "N",
        "epochs of fine-tuning on the training split after pruning, the pruned weights kept at 0 (default: {default})"))
    kd_student: str = _option("mobilenet_v3_small", _flag(
        "--ptq-kd-student", technique_types.student, "MODEL", "the model distilled from each case model"
        " (default: {default})"))
    kd_epochs: int = _option(5, _flag(
        "--ptq-kd-epochs", types.int_at_least(1), "N", "distillation epochs (default: {default}, as training from scratch)"))
    kd_temperature: float = _option(4.0, _flag(
        "--ptq-kd-temperature", technique_types.temperature, "T", "softmax temperature of the distillation loss (default: {default})"))
    kd_alpha: float = _option(0.7, _flag(
        "--ptq-kd-alpha", technique_types.alpha, "A", "weight of the teacher (soft) loss; 1 - A weighs cross-entropy on"
        " the labels (default: {default})"))


#: Where a help text says ``{default}``, :func:`flags` writes the field's default (:func:`shown_default`),
#: so no help repeats a default by hand; a default that needs words (a path from the environment,
#: "the physical cores") is written in the help of a field whose default says nothing (None, a factory).
DEFAULT_PLACEHOLDER = "{default}"


def shown_default(value) -> str:
    """A default as a user types it: lists comma-separated, enums by value, () as ``none``, numbers with ``%g``."""
    if isinstance(value, tuple):
        return ",".join(shown_default(item) for item in value) if value else "none"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flags() -> List[Tuple[str, Flag]]:
    """(field name, :class:`Flag`) of every :class:`SuiteOptions` field the command line sets, in
    order, each help text with its field's default in place of :data:`DEFAULT_PLACEHOLDER`."""
    out = []
    for f in fields(SuiteOptions):
        if "flag" in f.metadata:
            flag = f.metadata["flag"]
            if DEFAULT_PLACEHOLDER in flag.help:
                flag = replace(flag, help=flag.help.replace(DEFAULT_PLACEHOLDER, shown_default(f.default)))
            out.append((f.name, flag))
    return out


def options_from_values(get: Callable[[str], object]) -> SuiteOptions:
    """The :class:`SuiteOptions` of parsed option values: ``get(dest)`` is the parsed value of a
    flag, or None where it was not given (the field's default applies)."""
    values = {name: get(flag.dest) for name, flag in flags()}
    return SuiteOptions(**{name: value for name, value in values.items() if value is not None})

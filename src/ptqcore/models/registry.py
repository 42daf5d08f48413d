"""The model registry: which classifiers the suite knows and how to build each one.

A :class:`ModelSpec` says how to make a model (a torchvision factory, a tiny built-in network, or a
user's TorchScript / ONNX file), its input normalization (:class:`Preprocess`; a file keeps its given size, a trainable model takes the run's), and
which backend x precision combinations it cannot run, each with a reason.

Selections accept registry names, globs (``"mobilenet*"``), presets (``study``, ``quick``, ``all``),
any torchvision classifier by name, and paths to ``.onnx`` / ``.pt`` / ``.ts`` files.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.errors import ModelLoadError, PtqError, UsageError, error_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images are fed to a model: square side in pixels and per-channel mean / std (RGB, 0..1)."""

    size: int
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input size must be >= 8 pixels, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each and std must be positive")

    def with_size(self, size: int) -> "Preprocess":
        return Preprocess(size, self.mean, self.std)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the suite needs to know about one model.

    ``source`` is ``torchvision``, ``builtin``, ``torchscript`` or ``onnx``. For the first two,
    ``factory(num_classes)`` returns a fresh, randomly initialised ``nn.Module``; ``weights`` names
    torchvision's ImageNet weights (``None`` where it has none). For files, ``path`` is the file and
    the model is used as it is. ``unsupported`` maps ``(backend, precision)`` (``"*"`` matches any)
    to the reason that combination cannot run.
    """

    name: str
    source: str
    preprocess: Preprocess
    factory: Optional[Callable[[int], object]] = None
    weights: Optional[str] = None
    path: Optional[Path] = None
    unsupported: Mapping[Tuple[str, str], str] = field(default_factory=dict)

    @property
    def has_torch_model(self) -> bool:
        """False only for ONNX files: they have no PyTorch form, so no ``base`` case and no export."""
        return self.source != "onnx"

    @property
    def trainable(self) -> bool:
        return self.source in ("torchvision", "builtin")

    def unsupported_reason(self, backend: str, precision: str) -> Optional[str]:
        for (b, p), reason in self.unsupported.items():
            if b in ("*", backend) and p in ("*", precision):
                return reason
        if precision == "base" and not self.has_torch_model:
            return f"{self.name} is an ONNX file: it has no PyTorch base model (its fp32 case is the reference)"
        return None


_REGISTRY: Dict[str, ModelSpec] = {}

#: The study's six models (README, "What a run does"), small / medium / large by size in MB.
STUDY_MODELS = (
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b1",
    "efficientnet_b3",
    "densenet169",
    "densenet201",
)
PRESETS: Dict[str, Tuple[str, ...]] = {
    "study": STUDY_MODELS,
    "quick": ("mobilenet_v3_small",),
    "tiny": ("tiny_cnn",),
}
MODEL_FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".ts")


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (replacing one of the same name) and return it."""
    _REGISTRY[spec.name] = spec
    return spec


#: Training-time regularisers switched off for short training runs. They are identities at
#: inference, so the exported graph and the ImageNet weights are unchanged.
_TRAINING_KWARGS = {"efficientnet": {"dropout": 0.0, "stochastic_depth_prob": 0.0}}


def _torchvision_factory(name: str) -> Callable[[int], object]:
    kwargs = next((kw for prefix, kw in _TRAINING_KWARGS.items() if name.startswith(prefix)), {})

    def factory(num_classes: int):
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)

    factory.__qualname__ = f"torchvision.models.{name}"
    return factory


for _name, _weights in (
    ("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
    ("efficientnet_b1", "EfficientNet_B1_Weights.IMAGENET1K_V1"),
    ("efficientnet_b3", "EfficientNet_B3_Weights.IMAGENET1K_V1"),
    ("densenet169", "DenseNet169_Weights.IMAGENET1K_V1"),
    ("densenet201", "DenseNet201_Weights.IMAGENET1K_V1"),
    ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
):
    # The input side of trainable models is the run's (--ptq-image-size; 224 as the study fed every
    # model, 32 on digits), not a per-model native size: the study compared all six at 224.
    register(ModelSpec(_name, "torchvision", Preprocess(224), factory=_torchvision_factory(_name), weights=_weights))


def _tiny_cnn(num_classes: int):
    """A 4-layer CNN with the study models' building blocks (BN, depthwise conv, hardswish, pooling).

    It exists so that tests and smoke runs go through the whole pipeline in seconds.
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False),
        nn.BatchNorm2d(32),
        nn.Hardswish(),
        nn.Conv2d(32, 64, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


register(ModelSpec("tiny_cnn", "builtin", Preprocess(32), factory=_tiny_cnn))


def list_models(pattern: str = "*") -> List[str]:
    """Registry names matching a glob, sorted (``list_models("mobilenet*")``)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def torchvision_classifiers() -> List[str]:
    """Every classification model torchvision ships, by name (imports torchvision)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def get_model_spec(name: str) -> ModelSpec:
    """The spec for a registry name or any torchvision classifier; :class:`UsageError` otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in torchvision_classifiers():
        return ModelSpec(name, "torchvision", Preprocess(224), factory=_torchvision_factory(name))
    raise UsageError(f"unknown model {name!r}", _valid_names_hint())


def spec_from_file(
    path: os.PathLike,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    name: Optional[str] = None,
) -> ModelSpec:
    """A spec for a user's TorchScript (``.pt``, ``.pth``, ``.ts``) or ONNX (``.onnx``) classifier.

    The file must exist and take one NCHW float input of ``size`` x ``size``; it is loaded (and
    checked) when the suite first needs it. Its name is ``name``, else the file's stem; a
    selection with several files names them with :func:`file_model_names` so no two collide.
    """
    path = _checked_model_file(path)
    source = "onnx" if path.suffix.lower() == ".onnx" else "torchscript"
    preprocess = Preprocess(size, tuple(float(m) for m in mean), tuple(float(s) for s in std))
    return ModelSpec(name or path.stem, source, preprocess, path=path.resolve())


def file_model_names(selection: Sequence[str]) -> Dict[str, str]:
    """The model name of each model file of ``selection`` (keys: the items as given, stripped).

    A file is named by its stem unless that stem is a registered model's name, a name the rest of
    the selection resolves to, or the stem of another file of the selection: then it is
    ``STEM_HASH8``, with the first 8 hex digits of the SHA-256 of its bytes. So
    ``a/net.onnx,b/net.onnx`` gives two models and ``tiny,./tiny_cnn.onnx`` never puts the file
    under the built-in model's name. The same file given twice (or two copies with the same
    bytes) gets one name. Raises :class:`UsageError` for a missing file or an unknown suffix.
    """
    from ptqcore.store import file_sha256  # a plain hashing helper; the store does not import this module

    files = {item.strip(): _checked_model_file(item.strip()) for item in selection
             if item.strip() and looks_like_model_file(item.strip())}
    taken = set(_REGISTRY) | set(resolve_model_names(selection))
    paths_by_stem: Dict[str, set] = {}
    for path in files.values():
        paths_by_stem.setdefault(path.stem, set()).add(path.resolve())
    names: Dict[str, str] = {}
    for item, path in files.items():
        clash = path.stem in taken or len(paths_by_stem[path.stem]) > 1
        names[item] = f"{path.stem}_{file_sha256(path)[:8]}" if clash else path.stem
    return names


def _checked_model_file(path: os.PathLike) -> Path:
    """``path`` expanded, if it is an existing file with a model suffix; :class:`UsageError` otherwise."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in MODEL_FILE_SUFFIXES:
        raise UsageError(
            f"model file {path} has an unknown suffix",
            f"give a TorchScript file ({', '.join(MODEL_FILE_SUFFIXES[1:])}) or an ONNX file (.onnx)",
        )
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist", "check the path given to --ptq-models")
    return path


def looks_like_model_file(item: str) -> bool:
    return item.lower().endswith(MODEL_FILE_SUFFIXES) or os.sep in item


def resolve_model_names(selection: Sequence[str]) -> List[str]:
    """Expand presets and globs into registry / torchvision names, keeping order, dropping repeats.

    ``all`` means every registry model. File paths are left to :func:`spec_from_file`; an entry
    that matches nothing raises :class:`UsageError` listing the valid names.
    """
    names: List[str] = []
    for item in selection:
        item = item.strip()
        if not item or looks_like_model_file(item):
            continue
        if item == "all":
            expanded = [n for n in list_models() if n != "tiny_cnn"]
        elif item in PRESETS:
            expanded = list(PRESETS[item])
        elif any(ch in item for ch in "*?["):
            expanded = list_models(item)
            if not expanded:
                raise UsageError(f"model pattern {item!r} matches no model", _valid_names_hint())
        else:
            expanded = [get_model_spec(item).name]
        names.extend(n for n in expanded if n not in names)
    return names


def _valid_names_hint() -> str:
    return (
        f"use one of {', '.join(list_models())}; a preset ({', '.join(sorted(PRESETS))}, all); a glob"
        " such as 'mobilenet*'; any torchvision classifier name; or a path to a .onnx / .pt file"
    )


def _dims(value_info) -> Tuple[object, ...]:
    """An ONNX tensor's shape: ints where fixed, the symbol (or "?") where not."""
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in value_info.type.tensor_type.shape.dim)


def check_onnx_input(spec: ModelSpec, model, size: int) -> None:
    """:class:`UsageError` naming the model's input shape and the options that would fit, when the
    ONNX ``model`` (a loaded ``ModelProto`` of ``spec``'s file) cannot take what the run feeds it:
    batches of several sizes (evaluation, calibration, ``--ptq-batch-sizes``) of ``size`` x ``size``
    RGB images, NCHW. A symbolic dimension takes anything; a fixed one must match."""
    initializers = {t.name for t in model.graph.initializer}
    tensor = next((i for i in model.graph.input if i.name not in initializers), None)
    if tensor is None:
        raise UsageError(f"model {spec.name} ({spec.path}) has no graph input (every input is an initializer)",
                         "give a classifier that takes one NCHW float input")
    dims = _dims(tensor)
    shape = "x".join(map(str, dims))
    where = f"model {spec.name} ({spec.path}) takes input {tensor.name!r} of shape {shape}"
    if len(dims) != 4:
        raise UsageError(f"{where}, not a 4-D NCHW image batch", "give a classifier that takes one NCHW float input")
    batch, channels, height, width = dims
    if isinstance(channels, int) and channels != 3:
        raise UsageError(f"{where}: {channels} channel(s), but the suite feeds RGB images (3 channels)",
                         "give a model with 3 input channels (for a gray model, repeat the channel in its first layer)")
    fixed = [d for d in (height, width) if isinstance(d, int)]
    if len(set(fixed)) > 1:
        raise UsageError(f"{where}: a {height}x{width} input, but the suite feeds square images",
                         "give a model with a square (or dynamic) input")
    if fixed and fixed[0] != size:
        raise UsageError(f"{where}, but the run feeds {size}x{size} images",
                         f"add --ptq-model-input-size {fixed[0]}")
    if isinstance(batch, int):
        raise UsageError(f"{where}: a fixed batch of {batch}, but the suite feeds batches of several sizes"
                         " (evaluation, calibration, --ptq-batch-sizes)",
                         f"export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={{'{tensor.name}':"
                         " {0: 'batch'}}))")


def file_output_width(spec: ModelSpec, size: int) -> int:
    """How many classes a user's model file predicts: from an ONNX file's output shape, else from one
    run on zeros. :class:`UsageError` when its output is not 2-D ``(N, classes)`` logits or it does
    not run on a ``size`` x ``size`` RGB input."""
    if spec.source == "onnx":
        import onnx

        dims = onnx.load(str(spec.path), load_external_data=False).graph.output[0].type.tensor_type.shape.dim
        if len(dims) != 2:
            raise UsageError(f"model {spec.name} returns a {len(dims)}-D output", "give a classifier with (N, classes) logits")
        if dims[1].HasField("dim_value"):
            return dims[1].dim_value
    try:
        logits = _run_on_zeros(spec, size)
    except PtqError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.jit and onnxruntime raise many kinds for a model that does not run
        raise UsageError(f"model {spec.name} does not run on a {size}x{size} RGB input ({_reason(err)})",
                         "check --ptq-model-input-size, or give a classifier that takes one NCHW float input") from None
    if getattr(logits, "ndim", None) != 2:
        raise UsageError(f"model {spec.name} does not return 2-D logits", "give a classifier with (N, classes) logits")
    return int(logits.shape[1])


def _reason(err: BaseException) -> str:
    """:func:`~ptqcore.errors.error_line` of ``err``, but of a TorchScript interpreter error only its
    last line (the error itself; the lines above are the scripted code's traceback)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and any("Traceback of TorchScript" in line for line in lines):
        return lines[-1]
    return error_line(err)


def _run_on_zeros(spec: ModelSpec, size: int):
    """The model file's output for an all-zero input (ONNX: its fixed batch size, or 1 where symbolic)."""
    import numpy as np

    if spec.source == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
        batch = session.get_inputs()[0].shape[0]
        feed = np.zeros((batch if isinstance(batch, int) else 1, 3, size, size), dtype=np.float32)
        return session.run(None, {session.get_inputs()[0].name: feed})[0]
    import torch

    with torch.no_grad():
        return load_torchscript(spec.path)(torch.zeros(1, 3, size, size))


def load_torchscript(path: Path):
    """A user's TorchScript classifier, in eval mode; :class:`ModelLoadError` if it does not load."""
    import torch

    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch.jit raises RuntimeError or ValueError depending on the damage
        raise ModelLoadError(
            f"{path} does not load as TorchScript ({error_line(err)})",
            "save the model with torch.jit.save(torch.jit.script(model), path) or give an .onnx file",
        ) from None
    model.eval()
    return model

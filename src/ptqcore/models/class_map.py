"""The data set as one model sees it: which images it is evaluated on, and which output each class is.

A model trained here (``--ptq-weights train`` or ``head``, or a folder of checkpoints) has one
output per class folder, in ImageFolder's sort order: its labels are 0..K-1 and nothing is mapped.
A model whose outputs are fixed before the run (a user's ONNX / TorchScript file, or
``--ptq-weights imagenet``) is scored on labels that are its own output indices. When its output
width W differs from the K classes, or ``--ptq-class-map`` is given, each class folder of an image
folder is mapped to an output by the first rule that applies:

1. ``--ptq-class-map FILE``: a JSON object, class folder -> output index;
2. every folder name is a decimal number: that output (``0285/`` -> 285), each below W;
3. every folder name is an ImageNet-1k WordNet id and W is 1000: its index in ImageNet-1k's order
   (``n01440764/`` -> 0), from ``imagenet1k_wnids.txt`` shipped in this package.

Anything else is a :class:`~ptqcore.errors.UsageError` when the model's data set is first asked
for (the plugin asks at collection, before any work). A model with nothing to train is also
evaluated on every image not used for calibration (``load_dataset(..., trains=False)``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.errors import UsageError, error_line
from ptqcore.models.data import DataSet
from ptqcore.models.registry import ModelSpec, file_output_width

IMAGENET1K_CLASSES = 1000
WNIDS_FILE = Path(__file__).with_name("imagenet1k_wnids.txt")
_WNID = re.compile(r"n[0-9]{8}")
_NUMBER = re.compile(r"[0-9]+")
MAP_FIX = 'write a JSON object of class folder -> output index, e.g. {"0285": 285, "n07920052": 967}'
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


@lru_cache(maxsize=None)
def imagenet1k_wnids() -> Tuple[str, ...]:
    """ImageNet-1k's 1,000 WordNet ids in output order (sorted, as torchvision's ImageFolder orders them)."""
    lines = [line.strip() for line in WNIDS_FILE.read_text(encoding="ascii").splitlines()]
    wnids = tuple(line for line in lines if line and not line.startswith("#"))
    if len(set(wnids)) != IMAGENET1K_CLASSES or list(wnids) != sorted(wnids) or not all(map(_WNID.fullmatch, wnids)):
        raise RuntimeError(f"{WNIDS_FILE} is damaged: reinstall ptqcore")  # a packaging fault, not the user's
    return wnids


def load_class_map(path: Path) -> Dict[str, int]:
    """The ``--ptq-class-map`` file ``path``: a JSON object of class folder -> output index (a whole
    number >= 0), no folder twice and no two folders on one output. Folders that the data set does
    not have are allowed (one map can serve several subsets of a label set).
    Raises :class:`UsageError` naming the problem and the fix."""
    where = f"--ptq-class-map {path}"
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
        document = json.loads(text, object_pairs_hook=_object_without_repeats)
    except OSError as err:
        raise UsageError(f"{where} cannot be read ({err.strerror or error_line(err)})", "give a readable JSON file") from None
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"{where} is not a JSON document ({error_line(err)})", MAP_FIX) from None
    if not isinstance(document, dict) or not document:
        kind = _JSON_TYPES.get(type(document), type(document).__name__)
        raise UsageError(f"{where} holds {'an empty object' if document == {} else 'a JSON ' + kind}", MAP_FIX)
    bad = [f"{name!r}: {json.dumps(value)}" for name, value in document.items()
           if isinstance(value, bool) or not isinstance(value, int) or value < 0]
    if bad:
        raise UsageError(f"{where}: {len(bad)} value(s) are not output indices (whole numbers >= 0): {_listed(bad)}",
                         MAP_FIX)
    _check_one_folder_per_output(document, where, "give each class folder its own output index")
    return document


def folder_outputs(folders: Sequence[str], width: int, class_map: Optional[Mapping[str, int]] = None,
                   map_name: str = "--ptq-class-map") -> Tuple[Tuple[int, ...], str]:
    """The output index of each of ``folders`` (in that order) for a model of ``width`` outputs, and
    the rule that gave it (see the module docstring). Raises :class:`UsageError` when no rule
    applies, or the map misses a folder or names an output the model does not have."""
    if class_map is not None:
        missing = [folder for folder in folders if folder not in class_map]
        if missing:
            raise UsageError(f"{map_name} has no output for {len(missing)} class folder(s): {_listed(missing)}",
                             "add every class folder of the data set to the map")
        outputs, rule = [class_map[folder] for folder in folders], map_name
    elif all(_NUMBER.fullmatch(folder) for folder in folders):
        outputs, rule = [int(folder) for folder in folders], "folder names as output indices"
    elif all(_WNID.fullmatch(folder) for folder in folders) and width == IMAGENET1K_CLASSES:
        index = {wnid: i for i, wnid in enumerate(imagenet1k_wnids())}
        unknown = [folder for folder in folders if folder not in index]
        if unknown:
            raise UsageError(f"{len(unknown)} class folder(s) are not ImageNet-1k WordNet ids: {_listed(unknown)}",
                             f"rename them to ImageNet-1k ids or output indices, or pass --ptq-class-map FILE ({MAP_FIX})")
        outputs, rule = [index[folder] for folder in folders], "ImageNet-1k WordNet ids"
    else:
        raise UsageError(
            f"the model predicts {width} classes but the data set has {len(folders)} class folders"
            f" ({_listed(list(folders), 3)}) that are neither output indices (0285) nor ImageNet-1k WordNet ids"
            f" (n01440764{', for a 1000-output model' if width != IMAGENET1K_CLASSES else ''})",
            f"name the folders by output index, or pass --ptq-class-map FILE ({MAP_FIX})",
        )
    beyond = [f"{folder} -> {output}" for folder, output in zip(folders, outputs) if output >= width]
    if beyond:
        raise UsageError(f"{len(beyond)} class folder(s) map beyond the model's {width} outputs ({rule}): {_listed(beyond)}",
                         f"map every class folder to an output index below {width}")
    _check_one_folder_per_output(dict(zip(folders, outputs)), rule, "map each class folder to its own output")
    return tuple(outputs), rule


def output_width(spec: ModelSpec, input_size: int, weight_mode: str) -> Optional[int]:
    """The model's number of outputs where it is fixed before the run (files, ImageNet weights); None
    for a model trained here, which gets one output per class. ``input_size``: the side a model
    file is run at; ``weight_mode``: :func:`~ptqcore.models.training.resolve_weight_mode`'s."""
    if spec.source in ("onnx", "torchscript"):
        return file_output_width(spec, input_size)
    return IMAGENET1K_CLASSES if weight_mode == "imagenet" else None


def trains_on_data(spec: ModelSpec, weight_mode: str) -> bool:
    """Whether this run trains anything of the model on the data (then part of it is held out for that)."""
    return spec.trainable and weight_mode != "imagenet"


def dataset_for_model(data: DataSet, model: str, width: Optional[int], map_file: Optional[Path],
                      report: Callable[[str], None]) -> DataSet:
    """``data`` (loaded for ``model``: preprocessed and split for it) labelled with the model's output
    indices: unchanged when the model has one output per class in folder order (``width`` None or
    the class count, no ``map_file``), else relabelled by ``map_file`` (``--ptq-class-map``) or the
    ImageNet WordNet ids; a :class:`~ptqcore.errors.UsageError` when they cannot be matched."""
    if width is None or (width == data.num_classes and map_file is None):
        return data
    if data.class_names is None and map_file is not None:
        raise UsageError(f"--ptq-class-map maps class folders but data set {data.name} has none",
                         "use --ptq-class-map with --ptq-dataset imagefolder only")
    if data.class_names is None:
        raise UsageError(f"model {model} predicts {width} classes but data set {data.name} has {data.num_classes}",
                         "give a model with one output per class, or --ptq-weights train/head for a new head")
    class_map = load_class_map(map_file) if map_file is not None else None
    try:
        outputs, rule = folder_outputs(data.class_names, width, class_map, f"--ptq-class-map {map_file}")
    except UsageError as err:
        raise UsageError(f"model {model}: {err.problem}", err.fix) from None
    report(f"{model}: the {data.num_classes} class folders of {data.name} are its outputs by {rule}")
    return data.relabelled(outputs)


def _check_one_folder_per_output(outputs: Mapping[str, int], where: str, fix: str) -> None:
    folders_of: Dict[int, List[str]] = {}
    for folder, output in outputs.items():
        folders_of.setdefault(output, []).append(folder)
    shared = [f"{' and '.join(folders)} -> {output}" for output, folders in sorted(folders_of.items()) if len(folders) > 1]
    if shared:
        raise UsageError(f"{where}: two or more class folders on one output ({_listed(shared)})", fix)


def _object_without_repeats(pairs: List[Tuple[str, object]]) -> dict:
    """A JSON object hook that refuses a key given twice (``json`` would keep the last silently)."""
    document: dict = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"key {key!r} appears twice")
        document[key] = value
    return document


def _listed(items: Sequence[str], most: int = 5) -> str:
    """The first ``most`` of ``items``, comma-separated, saying how many more there are."""
    shown = ", ".join(str(item) for item in items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"

"""The engine census: layers per precision and reformat layers, from TensorRT's engine inspector."""

from __future__ import annotations

import json
import re
from typing import Dict, List, Optional, Tuple

from ptqcore.backends.tensorrt.capabilities import TrtCapabilities

# -- engine census -----------------------------------------------------------------------------------
#: TensorRT's data-type words in the inspector's format strings, by the name the census reports.
_TYPE_WORDS = (
    ("BFloat16", r"BFloat16|BF16"),
    ("Float", r"Float|FP32|kFLOAT"),
    ("Half", r"Half|FP16|kHALF"),
    ("Int8", r"Int8|INT8|kINT8"),
    ("UInt8", r"UInt8|UINT8"),
    ("Int32", r"Int32|INT32"),
    ("Int64", r"Int64|INT64"),
    ("FP8", r"FP8|E4M3"),
    ("Bool", r"Bool|BOOL"),
)
_TYPE_PATTERN = re.compile("|".join(rf"(?P<{name}>\b(?:{words})\b)" for name, words in _TYPE_WORDS))
#: Layers that do no work (elided reformats, multi-stream synchronisation) are not counted.
_NOT_RUN = ("NoOp", "signal", "wait")


def _type_of(text: object) -> str:
    match = _TYPE_PATTERN.search(str(text or ""))
    return match.lastgroup if match else "Unknown"


#: Keys a tensor's data type may be under, in lower case, most specific first. TensorRT 8.x-10.x
#: write ``Format/Datatype`` (and Polygraphy at release/11.1, ``backend/trt/util.py``, and TREx at
#: release/11.0, ``trex/activations.py``, still read only that key); a split ``DataType`` /
#: ``Datatype`` key beside ``Format`` is accepted too, in case a later release splits it.
_DATATYPE_KEYS = ("datatype", "data type", "format/datatype")


def _tensor_type(tensor: dict) -> str:
    """The census name of a tensor's data type, from whichever datatype key it has (any case)."""
    keys = {str(key).strip().lower(): value for key, value in tensor.items()}
    for key in _DATATYPE_KEYS:
        if key in keys:
            return _type_of(keys[key])
    return "Unknown"


def layer_facts(layer) -> Tuple[Optional[str], str, bool, bool]:
    """(layer type or None, precision, is a reformat, its details were known) of one inspector entry."""
    if isinstance(layer, dict):
        kind = layer.get("LayerType")
        if "Precision" in layer:
            precision = _type_of(layer["Precision"])
        else:
            tensors = list(layer.get("Inputs") or []) + list(layer.get("Outputs") or [])
            precision = _tensor_type(tensors[0]) if tensors and isinstance(tensors[0], dict) else "Unknown"
        reformat = "Reformat" in (kind, layer.get("ParameterType"))
        return kind, precision, reformat, True
    text = str(layer)
    kind_match = re.search(r"LayerType:\s*([A-Za-z0-9_]+)", text)
    if kind_match:  # a one-line description: "Name: ..., LayerType: ..., Inputs: [{... Format/Datatype: ...}]"
        format_match = re.search(r"(?:Format/Datatype|Data ?Type):\s*([^,\]}]+)", text, re.IGNORECASE)
        precision = _type_of(format_match.group(1)) if format_match else "Unknown"
        reformat = kind_match.group(1) == "Reformat" or "ParameterType: Reformat" in text
        return kind_match.group(1), precision, reformat, True
    # a bare layer name (ProfilingVerbosity other than DETAILED): only reformat copies are recognisable
    return None, "Unknown", text.startswith("Reformatting CopyNode"), False


def _text_layers(text: str) -> List[str]:
    """The layer lines of plain one-line text: those under ``Layers:``, up to ``Bindings:``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Bindings:" in lines:
        lines = lines[: lines.index("Bindings:")]
    return [line for line in lines if line != "Layers:"]


def inspector_layer_list(text: str) -> list:
    """The ``Layers`` of ``IEngineInspector.get_engine_information`` output: dicts (detailed JSON),
    names (names-only JSON) or the lines of plain one-line text. ValueError without a layer list."""
    try:
        document = json.loads(text, strict=False)  # TensorRT 8.6/10 put raw control characters in names
    except ValueError:
        document = {"Layers": _text_layers(text)}
    layers = document.get("Layers") if isinstance(document, dict) else document
    if not isinstance(layers, list):
        raise ValueError("engine information without a 'Layers' list")
    return layers


def engine_information(engine, trt) -> Optional[str]:
    """The engine inspector's JSON of a deserialized engine, or None where TensorRT has none (before 8.2)."""
    if not TrtCapabilities.from_module(trt).has_engine_inspector:
        return None
    return engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)


def census_from_inspector_json(text: str) -> dict:
    """Layer counts of an engine from ``IEngineInspector.get_engine_information(JSON)``.

    Reads the detailed layout (``{"Layers": [{"Name", "LayerType", "Inputs": [{"Format/Datatype"}],
    ...}]}``; the datatype key is matched without regard to case, and a split ``DataType`` key
    beside ``Format`` is read as well: see :data:`_DATATYPE_KEYS`), the names-only layout older builds and
    non-DETAILED engines give (``{"Layers": ["name", ...]}``, one line per layer) and plain one-line
    text. Returns ``layers`` (layers that run: ``NoOp`` and signal/wait excluded),
    ``layers_by_precision`` (by the type of each layer's first input, e.g. ``{"Int8": 40, "Half":
    3, "Float": 2}``; ``Unknown`` without details), ``reformat_layers`` (``Reformat`` layers,
    including those TensorRT made from Q/DQ nodes), ``reformat_layers_from_qdq`` and ``detailed``.
    """
    layers = inspector_layer_list(text)
    by_precision: Dict[str, int] = {}
    counted = reformats = from_qdq = 0
    detailed = bool(layers)
    for layer in layers:
        kind, precision, reformat, known = layer_facts(layer)
        detailed = detailed and known
        if kind in _NOT_RUN:
            continue
        counted += 1
        by_precision[precision] = by_precision.get(precision, 0) + 1
        if reformat:
            reformats += 1
            from_qdq += isinstance(layer, dict) and layer.get("Origin") == "QDQ"
    return {
        "layers": counted,
        "layers_by_precision": dict(sorted(by_precision.items(), key=lambda item: (-item[1], item[0]))),
        "reformat_layers": reformats,
        "reformat_layers_from_qdq": int(from_qdq),
        "detailed": detailed,
    }


def engine_census(engine, trt) -> Optional[dict]:
    """:func:`census_from_inspector_json` of a deserialized engine, or None where TensorRT has no
    engine inspector (before 8.2). Build with ``detailed_profiling`` so precisions are known."""
    text = engine_information(engine, trt)
    return None if text is None else census_from_inspector_json(text)

"""Phase 2 conversions on ONNX files: FP16, and INT8 by static post-training quantization (Q/DQ).

INT8 is three steps, each a pure function from files to a file, so each can be cached:

1. :func:`prepared_onnx_from_onnx`: ONNX Runtime's ``quant_pre_process`` (shape inference and
   graph clean-up), which quantization tools expect;
2. :func:`statistics_from_onnx`: run the calibration images through the prepared model once and
   keep every tensor's min/max and 2048-bin histogram (:mod:`ptqcore.build.calibration`); then
   :func:`ranges_from_statistics_file` derives the min/max, entropy or percentile ranges from
   them, written as ONNX Runtime's calibration cache; the same ranges quantize for every backend;
3. :func:`qdq_onnx_from_onnx`: insert QuantizeLinear/DequantizeLinear pairs from those ranges,
   in the form a :class:`QuantRecipe` names (for ONNX Runtime the layout that suits the CPU, see
   :mod:`ptqcore.cpu_isa`; signed symmetric for TensorRT), leaving the recipe's
   ``nodes_to_exclude`` in float (:mod:`ptqcore.build.float_layers`).

ONNX Runtime's string-keyed ``extra_options`` stay inside :class:`QuantRecipe`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from ptqcore.build.calibration import (
    collect_statistics,
    load_statistics,
    ranges_from_statistics,
    save_statistics,
    tensors_data,
)
from ptqcore.case import CALIBRATION_METHODS, DEFAULT_CALIBRATION
from ptqcore.cpu_isa import INT8_RECIPES
from ptqcore.errors import BuildError


@dataclass(frozen=True)
class QuantRecipe:
    """How INT8 Q/DQ models are calibrated and laid out; every field ends up in the cache key."""

    calibration: str = DEFAULT_CALIBRATION
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    #: 7-bit weights: ONNX Runtime's remedy for U8S8 saturation on x86 without VNNI.
    reduce_range: bool = False
    symmetric_activations: bool = False
    quantize_bias: bool = True
    qdq_pair_on_weights: bool = False
    dedicated_qdq_pair: bool = False
    percentile: float = 99.999
    calibration_batch_size: int = 16
    #: Nodes kept in float, inputs included (:func:`ptqcore.build.float_layers.keep_in_float`); empty for plain INT8.
    nodes_to_exclude: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in ("uint8", "int8"):
                raise ValueError(f"{name} must be 'uint8' or 'int8'")

    @classmethod
    def for_onnxruntime_cpu(cls, calibration: str = DEFAULT_CALIBRATION, layout: str = "u8s8") -> "QuantRecipe":
        """Per-channel weights in ``layout`` (one of :data:`~ptqcore.cpu_isa.INT8_RECIPES`):
        ``u8s8`` (fastest on x86 with VNNI), ``u8s8-reduce-range`` (x86 without VNNI), ``s8s8`` (ARM64)."""
        if layout not in INT8_RECIPES:
            raise ValueError(f"layout must be one of {', '.join(INT8_RECIPES)}, got {layout!r}")
        return cls(calibration=calibration, activation_type="int8" if layout == "s8s8" else "uint8",
                   reduce_range=layout == "u8s8-reduce-range")

    @property
    def layout(self) -> str:
        """The short name of the layout: ``u8s8``, ``s8s8``, ``u8s8-reduce-range`` (or ``s8s8-symmetric``
        for TensorRT's form)."""
        name = ("s8" if self.activation_type == "int8" else "u8") + ("s8" if self.weight_type == "int8" else "u8")
        if self.symmetric_activations:
            name += "-symmetric"
        return name + ("-reduce-range" if self.reduce_range else "")

    def record_fields(self) -> dict:
        """What every INT8 record says about how its model was quantized."""
        return {"int8_recipe": self.layout, "activation_type": self.activation_type, "weight_type": self.weight_type,
                "per_channel": self.per_channel, "reduce_range": self.reduce_range}

    @classmethod
    def for_tensorrt(cls, calibration: str = DEFAULT_CALIBRATION) -> "QuantRecipe":
        """Signed INT8, zero points 0, per-channel weights with their own Q/DQ pair, FP32 bias."""
        return cls(
            calibration=calibration,
            activation_type="int8",
            symmetric_activations=True,
            quantize_bias=False,
            qdq_pair_on_weights=True,
            dedicated_qdq_pair=True,
        )

    def as_dict(self) -> dict:
        """Every field, for cache keys; ``nodes_to_exclude`` only when there are any, so that the keys
        of plain INT8 artifacts (built before mixed precision existed) stay what they were."""
        out = asdict(self)
        if out["nodes_to_exclude"]:
            out["nodes_to_exclude"] = list(out["nodes_to_exclude"])
        else:
            del out["nodes_to_exclude"]
        return out

    def quantizer_options(self) -> dict:
        """``extra_options`` for ``onnxruntime.quantization.quantize_static``."""
        return {
            "ActivationSymmetric": self.symmetric_activations,
            "WeightSymmetric": True,
            "QuantizeBias": self.quantize_bias,
            "AddQDQPairToWeight": self.qdq_pair_on_weights,
            "DedicatedQDQPair": self.dedicated_qdq_pair,
        }


def _ort_quantization():
    from onnxruntime import quantization

    return quantization


def _method(recipe: QuantRecipe):
    q = _ort_quantization()
    return {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[recipe.calibration]


def _qtype(name: str):
    q = _ort_quantization()
    return q.QuantType.QUInt8 if name == "uint8" else q.QuantType.QInt8


def fp16_onnx_from_onnx(onnx_path: Path, out_path: Path) -> Path:
    """An FP16 copy of the model whose input and output stay FP32 (so callers feed the same data)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    onnx.save(model, str(out_path))
    return Path(out_path)


def prepared_onnx_from_onnx(onnx_path: Path, out_path: Path) -> Path:
    """ONNX Runtime's quantization pre-processing: symbolic shape inference and graph optimisation."""
    q = _ort_quantization()
    try:
        q.quant_pre_process(str(onnx_path), str(out_path))
    except Exception as err:  # shape inference raises many types on odd graphs
        raise BuildError(
            f"quantization pre-processing failed on {onnx_path} ({type(err).__name__}: {err})",
            "check that the model exports with static channel and spatial sizes",
        ) from None
    return Path(out_path)


class _ArrayReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over an image array, in fixed batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        )
        self._input_name = input_name

    def get_next(self) -> Optional[dict]:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def statistics_from_onnx(prepared_path: Path, images: np.ndarray, out_path: Path, batch_size: int = 16,
                         threads: int = 0) -> Path:
    """The one calibration pass: every calibrated tensor's min/max and histogram, saved (``.npz``)."""
    save_statistics(collect_statistics(prepared_path, images, batch_size, threads), Path(out_path))
    return Path(out_path)


def graph_outputs(model_path: Path) -> Tuple[str, ...]:
    """The names of the graph outputs of the ONNX file at ``model_path`` (external data not loaded)."""
    import onnx

    return tuple(out.name for out in onnx.load(str(model_path), load_external_data=False).graph.output)


def ranges_from_statistics_file(statistics_path: Path, recipe: QuantRecipe, out_path: Path,
                                observed: Iterable[str] = ()) -> Path:
    """The ranges of ``recipe.calibration`` derived from saved statistics (no pass over images),
    with the ``observed`` tensors at their observed range (graph outputs: see
    :mod:`ptqcore.build.calibration`), written as ONNX Runtime's calibration cache (:func:`write_ranges`)."""
    ranges = ranges_from_statistics(load_statistics(statistics_path), recipe.calibration, recipe.percentile, observed)
    return write_ranges(ranges, recipe.calibration, Path(out_path))


def calibration_ranges_from_onnx(prepared_path: Path, images: np.ndarray, recipe: QuantRecipe, out_path: Path) -> Path:
    """Statistics pass and ranges in one call, for callers that need only one method."""
    with tempfile.TemporaryDirectory(prefix="ptqcore-calib-") as scratch:
        statistics = statistics_from_onnx(prepared_path, images, Path(scratch) / "statistics.npz",
                                          recipe.calibration_batch_size)
        return ranges_from_statistics_file(statistics, recipe, out_path, graph_outputs(prepared_path))


def write_ranges(ranges: Dict[str, Tuple[float, float]], method: str, out_path: Path) -> Path:
    """``{tensor: (low, high)}`` as the JSON calibration cache ONNX Runtime's ``save_tensors_data``
    writes and ``quantize_static(calibration_cache_path=...)`` reads (1.31+, ``TensorsData.to_dict``
    with ``CalibrationCacheEncoder`` in onnxruntime/python/tools/quantization/calibrate.py), with
    sorted keys so that the same ranges always give the same bytes."""
    method_name = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[method]

    def scalar(value: float) -> dict:
        return {"CLS": "numpy.array", "data": float(np.float32(value)), "dtype": "float32"}

    document = {
        "CLS": "TensorsData",
        "calibration_method": {"CLS": "CalibrationMethod", "value": f"CalibrationMethod.{method_name}"},
        "data": {name: {"CLS": "TensorData", "lowest": scalar(low), "highest": scalar(high)}
                 for name, (low, high) in ranges.items()},
        "smooth_quant": False,
    }
    Path(out_path).write_text(json.dumps(document, sort_keys=True))
    return Path(out_path)


def read_ranges(path: Path) -> Tuple[str, Dict[str, Tuple[float, float]]]:
    """``(method, {tensor: (low, high)})`` from a file :func:`write_ranges` wrote."""
    document = json.loads(Path(path).read_text())
    method = document["calibration_method"]["value"].split(".")[-1].lower()
    return method, {name: (float(item["lowest"]["data"]), float(item["highest"]["data"]))
                    for name, item in document["data"].items()}


def onnxruntime_calibrator_ranges(prepared_path: Path, images: np.ndarray, method: str,
                                  options: Optional[dict] = None) -> Dict[str, Tuple[float, float]]:
    """``{tensor: (low, high)}`` from ONNX Runtime's own calibrator (``create_calibrator`` with
    ``CalibrationMethod.<method>``, batches of 16): the yardstick for :mod:`ptqcore.build.calibration`
    in its tests and in the calibration-speed benchmark."""
    import onnx

    q = _ort_quantization()
    name = onnx.load(str(prepared_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="ptqcore-ortcal-") as scratch:
        calibrator = q.create_calibrator(str(prepared_path), augmented_model_path=str(Path(scratch) / "a.onnx"),
                                         calibrate_method=getattr(q.CalibrationMethod, method),
                                         extra_options=options or {})
        calibrator.collect_data(_ArrayReader(name, images, 16))
        data = calibrator.compute_data().data
        del calibrator  # releases the augmented model's session before the folder goes
    return {k: (float(np.ravel(v.lowest)[0]), float(np.ravel(v.highest)[0])) for k, v in data.items()}


def supports_calibration_cache() -> bool:
    """True where ``quantize_static`` can quantize from saved ranges (ONNX Runtime >= 1.31)."""
    return "calibration_cache_path" in inspect.signature(_ort_quantization().quantize_static).parameters


@contextlib.contextmanager
def _saved_ranges_instead_of_calibration(ranges_path: Path):
    """Make one ``quantize_static`` call of ONNX Runtime < 1.31 quantize from the saved ranges.

    Those releases cannot take saved ranges: ``quantize_static`` always calls
    ``create_calibrator(...)``, then ``collect_data`` and ``compute_data()``, and quantizes from
    the ``TensorsData`` that returns (onnxruntime/python/tools/quantization/quantize.py, 1.16 to
    1.30). For the duration of the call, that module's ``create_calibrator`` is replaced by one
    whose ``compute_data`` returns the saved ranges, so every release quantizes from the very same
    ranges as 1.31+ does through ``calibration_cache_path``.
    """
    import importlib

    # the submodule: on 1.19 the package's ``quantize`` attribute is the re-exported function
    module = importlib.import_module("onnxruntime.quantization.quantize")
    method, ranges = read_ranges(ranges_path)

    class _Saved:
        def collect_data(self, reader) -> None:
            return None

        def compute_data(self):
            return tensors_data(ranges, method)

    original = module.create_calibrator
    module.create_calibrator = lambda *args, **kwargs: _Saved()
    try:
        yield
    finally:
        module.create_calibrator = original


@contextlib.contextmanager
def _private_link(model_path: Path) -> Iterator[Path]:
    """``model_path`` seen through a symbolic link in a fresh temporary folder, for ``quantize_static``.

    ONNX Runtime's ``load_model_with_shape_infer`` (quant_utils.py, 1.19 to 1.32) writes
    ``<model>-inferred.onnx`` beside its input and deletes it afterwards. Beside a cached
    ``prepared.onnx`` that is a write into the cache: a stray file if the build is interrupted, and
    two runs quantizing the same prepared model at once delete each other's file
    (``FileNotFoundError``, seen with two runs on one cache). The link costs nothing inside a timed
    round, unlike a copy."""
    with tempfile.TemporaryDirectory(prefix="ptqcore-quantize-") as folder:
        link = Path(folder) / Path(model_path).name
        link.symlink_to(Path(model_path).resolve())
        yield link


def qdq_onnx_from_onnx(prepared_path: Path, ranges_path: Path, recipe: QuantRecipe, out_path: Path) -> Path:
    """A Q/DQ INT8 model quantized from the saved ranges in the layout ``recipe`` names, on every
    supported ONNX Runtime (through ``calibration_cache_path`` from 1.31, else
    :func:`_saved_ranges_instead_of_calibration`)."""
    q = _ort_quantization()
    kwargs = dict(
        quant_format=q.QuantFormat.QDQ,
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        activation_type=_qtype(recipe.activation_type),
        weight_type=_qtype(recipe.weight_type),
        calibrate_method=_method(recipe),
        extra_options=recipe.quantizer_options(),
    )
    if recipe.nodes_to_exclude:
        kwargs["nodes_to_exclude"] = list(recipe.nodes_to_exclude)
    with _private_link(prepared_path) as model_input:
        if supports_calibration_cache():
            q.quantize_static(str(model_input), str(out_path), calibration_data_reader=None,
                              calibration_cache_path=str(ranges_path), **kwargs)
        else:
            empty = _ArrayReader("unused", np.zeros((0,), dtype=np.float32), 1)  # the stand-in reads nothing
            with _saved_ranges_instead_of_calibration(ranges_path):
                q.quantize_static(str(model_input), str(out_path), calibration_data_reader=empty, **kwargs)
    if recipe.nodes_to_exclude:
        import onnx

        from ptqcore.build.float_layers import keep_in_float

        model = keep_in_float(onnx.load(str(out_path)), recipe.nodes_to_exclude, onnx.load(str(prepared_path)))
        onnx.save(model, str(out_path))
    return Path(out_path)

"""Phase 2 conversions on ONNX files: FP16, and INT8 by static post-training quantization (Q/DQ).

INT8 is three steps, each a pure function from files to a file, so each can be cached:

1. :func:`prepared_onnx_from_onnx`: ONNX Runtime's ``quant_pre_process`` (shape inference and
   graph clean-up), which quantization tools expect;
2. :func:`calibration_ranges_from_onnx`: run the calibration images through the prepared model
   and save the activation ranges (min/max, entropy with a real 2048-bin histogram, or
   percentile) as a calibration cache; the same ranges can quantize for several backends;
3. :func:`qdq_onnx_from_onnx`: insert QuantizeLinear/DequantizeLinear pairs from those ranges,
   in the form a :class:`QuantRecipe` names (for ONNX Runtime the layout that suits the CPU, see
   :mod:`ptqcore.cpu_isa`; signed symmetric for TensorRT).

ONNX Runtime's string-keyed ``extra_options`` stay inside :class:`QuantRecipe`.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .cpu_isa import INT8_RECIPES
from .errors import BuildError

CALIBRATIONS = ("minmax", "entropy", "percentile")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantRecipe:
    """How INT8 Q/DQ models are calibrated and laid out; every field ends up in the cache key."""

    calibration: str = "minmax"
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    #: 7-bit weights: ONNX Runtime's remedy for U8S8 saturation on x86 without VNNI.
    reduce_range: bool = False
    symmetric_activations: bool = False
    quantize_bias: bool = True
    qdq_pair_on_weights: bool = False
    dedicated_qdq_pair: bool = False
    num_bins: int = 2048
    percentile: float = 99.999
    calibration_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        for name in ("activation_type", "weight_type"):
            if getattr(self, name) not in ("uint8", "int8"):
                raise ValueError(f"{name} must be 'uint8' or 'int8'")

    @classmethod
    def for_onnxruntime_cpu(cls, calibration: str = "minmax", layout: str = "u8s8") -> "QuantRecipe":
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
    def for_tensorrt(cls, calibration: str = "minmax") -> "QuantRecipe":
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
        return asdict(self)

    def calibrator_options(self) -> dict:
        """``extra_options`` for ``onnxruntime.quantization.create_calibrator``."""
        if self.calibration == "entropy":
            return {"num_bins": self.num_bins, "num_quantized_bins": 128}
        if self.calibration == "percentile":
            return {"num_bins": self.num_bins, "percentile": self.percentile}
        return {}

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


def _input_name(onnx_path: Path) -> str:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers)


def calibration_ranges_from_onnx(prepared_path: Path, images: np.ndarray, recipe: QuantRecipe, out_path: Path) -> Path:
    """Run ``images`` through the prepared model and save each tensor's range as a JSON calibration cache."""
    q = _ort_quantization()
    if len(images) == 0:
        raise BuildError("the calibration set is empty", "use --ptq-calibration-size >= 1")
    with tempfile.TemporaryDirectory(prefix="ptqcore-calib-") as scratch:
        calibrator = q.create_calibrator(
            str(prepared_path),
            augmented_model_path=str(Path(scratch) / "augmented.onnx"),
            calibrate_method=_method(recipe),
            extra_options=recipe.calibrator_options(),
        )
        calibrator.collect_data(_ArrayReader(_input_name(prepared_path), images, recipe.calibration_batch_size))
        ranges = calibrator.compute_data()
        del calibrator  # releases the augmented model's session before the folder goes
    _save_ranges(ranges, Path(out_path))
    return Path(out_path)


def _save_ranges(ranges, out_path: Path) -> None:
    """Write the ranges as JSON with sorted keys, so the same ranges always give the same bytes.

    ONNX Runtime >= 1.31 has ``save_tensors_data`` (the format ``quantize_static`` reads back);
    older releases (1.19 on JetPack 5's Python 3.8) do not, and their ranges are written in the
    same layout from the ``TensorData`` attributes, for the record and for TensorRT.
    """
    q = _ort_quantization()
    if hasattr(q, "save_tensors_data"):
        q.save_tensors_data(ranges, str(out_path))
        document = json.loads(out_path.read_text())
    else:
        document = {"CLS": "TensorsData", "calibration_method": str(getattr(ranges, "calibration_method", "")),
                    "data": {name: _tensor_data_dict(value) for name, value in ranges.data.items()}}
    out_path.write_text(json.dumps(document, sort_keys=True))


def _tensor_data_dict(value) -> dict:
    fields = {"CLS": type(value).__name__}
    for name in ("lowest", "highest", "hist", "hist_edges", "bins", "avg", "std"):
        item = getattr(value, name, None)
        if item is not None:
            fields[name] = np.asarray(item).tolist()
    return fields


def supports_calibration_cache() -> bool:
    """True where ``quantize_static`` can quantize from saved ranges (ONNX Runtime >= 1.31)."""
    return "calibration_cache_path" in inspect.signature(_ort_quantization().quantize_static).parameters


def qdq_onnx_from_onnx(
    prepared_path: Path,
    ranges_path: Path,
    recipe: QuantRecipe,
    out_path: Path,
    images: Optional[np.ndarray] = None,
) -> Path:
    """A Q/DQ INT8 model quantized from the saved ranges in the layout ``recipe`` names.

    Where ONNX Runtime cannot take saved ranges (older than 1.31), it calibrates again from
    ``images`` with the same method, and a warning says so.
    """
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
    if supports_calibration_cache():
        kwargs.update(calibration_data_reader=None, calibration_cache_path=str(ranges_path))
    else:
        if images is None:
            raise BuildError("this ONNX Runtime cannot quantize from saved ranges", "upgrade onnxruntime to >= 1.31")
        _log.warning("onnxruntime < 1.31: quantize_static recalibrates; entropy then uses its default bins")
        kwargs["calibration_data_reader"] = _ArrayReader(_input_name(prepared_path), images, recipe.calibration_batch_size)
    q.quantize_static(str(prepared_path), str(out_path), **kwargs)
    return Path(out_path)

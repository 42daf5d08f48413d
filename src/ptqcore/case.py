"""One point of the benchmark matrix: :class:`Case`, and the :class:`Precision` names.

A case's :attr:`Case.id` (``mobilenet_v3_small-int8-onnxruntime-cpu-b1``) is the pytest id and the
key that every result record of that case carries, so ``pytest -k "int8 and densenet"`` selects it.
An INT8 case's calibration shows in the id only where it is not the study's (entropy on 128
images): ``...-b1-minmax``, ``...-b1-cal32``, ``...-b1-percentile-cal512``. A case of a compression
technique other than PTQ alone (:mod:`ptqcore.models.techniques`) names it after the model:
``densenet201-prune80-int8-onnxruntime-cpu-b1``, ``densenet201-kd_mobilenet_v3_small-fp32-...``; PTQ
cases (technique :data:`DEFAULT_TECHNIQUE`) keep their ids.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Iterable, List, Mapping, Optional, Sequence

#: The calibration methods ptqcore computes ranges with (:mod:`ptqcore.build.calibration`), in the
#: order ``--ptq-calibrations all`` lists them: the one table that options, :class:`QuantRecipe
#: <ptqcore.build.quantize.QuantRecipe>` and TensorRT's build options read.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: The study's method (TensorRT's entropy calibrator): the default of every INT8 case and recipe.
DEFAULT_CALIBRATION = "entropy"
#: The study's number of calibration images.
DEFAULT_CALIBRATION_SIZE = 128
#: Post-training quantization alone: the model as trained is the base of phase 1 (the study's axis).
DEFAULT_TECHNIQUE = "ptq"


class Precision(str, enum.Enum):
    """What a case runs: the PyTorch FP32 model itself (``base``) or a compressed artifact."""

    BASE = "base"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    #: INT8 with the fewest layers kept in float that bring the drop within its limit (:mod:`ptqcore.study.mixed`)
    INT8_MIXED = "int8-mixed"

    @property
    def compressed(self) -> bool:
        """True for the precisions that phase 1 and phase 2 produce (everything but ``base``)."""
        return self is not Precision.BASE

    @property
    def quantized(self) -> bool:
        """True for the precisions built from calibration ranges (``int8`` and ``int8-mixed``): they
        have a calibration method and size, INT8 inputs and a fake-quant reference."""
        return self in (Precision.INT8, Precision.INT8_MIXED)


PRECISION_NAMES = tuple(p.value for p in Precision)
#: The names of the precisions built from calibration ranges (:attr:`Precision.quantized`), for records read as JSON.
QUANTIZED_PRECISION_NAMES = tuple(p.value for p in Precision if p.quantized)
#: What runs without ``--ptq-precisions``: the study's four; ``int8-mixed`` is asked for (a failing INT8
#: case's message says so), since it only does work where plain INT8 fails.
DEFAULT_PRECISIONS = tuple(p for p in Precision if p is not Precision.INT8_MIXED)
#: The precisions phase 2 produces, in :class:`Precision` order (what backends build, what thresholds name).
COMPRESSED_PRECISION_NAMES = tuple(p.value for p in Precision if p.compressed)

#: The backend that runs ``base`` cases: PyTorch, on the model's own weights.
BASE_BACKEND = "torch"


@dataclass(frozen=True)
class Case:
    """One model x precision x backend x device x batch size (x calibration method and size for INT8).

    ``recipe`` is the calibration method for INT8 cases and empty otherwise; ``calibration_size``
    the number of calibration images for INT8 cases (:data:`DEFAULT_CALIBRATION_SIZE` when not
    given) and None otherwise. ``technique`` names what made the case's base model
    (:mod:`ptqcore.models.techniques`: ``ptq`` = the model as trained, ``prune80``, ``kd_<student>``). Each
    shows in the id only when it is not the default, so default ids stay short and stable.
    """

    model: str
    precision: Precision
    backend: str
    device: str
    batch_size: int
    recipe: str = ""
    calibration_size: Optional[int] = None
    technique: str = DEFAULT_TECHNIQUE

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision.quantized != bool(self.recipe):
            raise ValueError("an INT8 case needs a calibration recipe and other cases have none")
        if not self.precision.quantized:
            if self.calibration_size is not None:
                raise ValueError("only an INT8 case has a calibration size")
        elif self.calibration_size is None:
            object.__setattr__(self, "calibration_size", DEFAULT_CALIBRATION_SIZE)  # frozen: set once, here
        elif self.calibration_size < 1:
            raise ValueError(f"calibration_size must be >= 1, got {self.calibration_size}")

    @property
    def id(self) -> str:
        technique = [self.technique] if self.technique != DEFAULT_TECHNIQUE else []
        parts = [self.model, *technique, self.precision.value, self.backend, self.device, f"b{self.batch_size}"]
        if self.recipe and self.recipe != DEFAULT_CALIBRATION:
            parts.append(self.recipe)
        if self.calibration_size is not None and self.calibration_size != DEFAULT_CALIBRATION_SIZE:
            parts.append(f"cal{self.calibration_size}")
        return "-".join(parts)

    @classmethod
    def from_fields(cls, fields: Mapping) -> "Case":
        """The case whose :meth:`fields` are ``fields`` (raises ValueError or TypeError for values
        no case has)."""
        return cls(str(fields["model"]), Precision(fields["precision"]), str(fields["backend"]), str(fields["device"]),
                   int(fields["batch_size"]), fields.get("calibration") or "", fields.get("calibration_size"),
                   str(fields.get("technique") or DEFAULT_TECHNIQUE))

    def fields(self) -> dict:
        """The identifying fields every record and every benchmark entry of this case carries."""
        return {
            "case": self.id,
            "model": self.model,
            "precision": self.precision.value,
            "backend": self.backend,
            "device": self.device,
            "batch_size": self.batch_size,
            "calibration": self.recipe or None,
            "calibration_size": self.calibration_size,
            "technique": self.technique,
        }


def build_matrix(
    models: Sequence[str],
    precisions: Sequence[Precision],
    backends: Sequence[str],
    devices: dict,
    batch_sizes: Sequence[int],
    calibrations: Sequence[str] = (DEFAULT_CALIBRATION,),
    calibration_sizes: Sequence[int] = (DEFAULT_CALIBRATION_SIZE,),
    techniques: Sequence[str] = (DEFAULT_TECHNIQUE,),
) -> List[Case]:
    """All cases, in a stable order: model, then technique, then base before the backends, then
    precision, batch, calibration method, calibration size (INT8 gets one case per method x size).

    ``devices`` maps each backend name to the device it runs on. ``base`` cases run on PyTorch
    whatever ``backends`` says, once on each device the selected backends use (the CPU for
    ONNX Runtime, CUDA for TensorRT), so that every compressed case has a base on its own device
    to be compared with. Duplicates in the inputs are ignored.
    """
    cases: List[Case] = []
    seen = set()

    def add(case: Case) -> None:
        if case.id not in seen:
            seen.add(case.id)
            cases.append(case)

    base_devices = _unique(devices[backend] for backend in backends)
    for model in _unique(models):
        for device in base_devices:
            for batch in _unique(batch_sizes):
                if Precision.BASE in precisions:
                    add(Case(model, Precision.BASE, BASE_BACKEND, device, batch))
        for backend in _unique(backends):
            for precision in _unique(precisions):
                if not precision.compressed:
                    continue
                for batch in _unique(batch_sizes):
                    if not precision.quantized:
                        add(Case(model, precision, backend, devices[backend], batch))
                        continue
                    for recipe in _unique(calibrations):
                        for size in _unique(calibration_sizes):
                            add(Case(model, precision, backend, devices[backend], batch, recipe, size))
    return _per_technique(cases, techniques)


def _per_technique(cases: Sequence[Case], techniques: Sequence[str]) -> List[Case]:
    """``cases`` once per technique (its ``technique`` set), grouped by model, techniques in the given order."""
    techniques = _unique(techniques)
    if techniques == [DEFAULT_TECHNIQUE]:
        return list(cases)
    return [replace(case, technique=technique) for model in _unique(case.model for case in cases)
            for technique in techniques for case in cases if case.model == model]


def _unique(items: Iterable) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out

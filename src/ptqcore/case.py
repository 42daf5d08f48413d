"""One point of the benchmark matrix: :class:`Case`, and the :class:`Precision` names.

A case's :attr:`Case.id` (``mobilenet_v3_small-int8-onnxruntime-cpu-b1``) is the pytest id and the
key that every result record of that case carries, so ``pytest -k "int8 and densenet"`` selects it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, List, Sequence

#: The study's method (TensorRT's entropy calibrator), computed by :mod:`ptqcore.calibration`.
DEFAULT_CALIBRATION = "entropy"


class Precision(str, enum.Enum):
    """What a case runs: the PyTorch FP32 model itself (``base``) or a compressed artifact."""

    BASE = "base"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    @property
    def compressed(self) -> bool:
        """True for the precisions that phase 1 and phase 2 produce (everything but ``base``)."""
        return self is not Precision.BASE


PRECISION_NAMES = tuple(p.value for p in Precision)
#: The precisions phase 2 produces, in :class:`Precision` order (what backends build, what thresholds name).
COMPRESSED_PRECISION_NAMES = tuple(p.value for p in Precision if p.compressed)

#: The backend that runs ``base`` cases: PyTorch, on the model's own weights.
BASE_BACKEND = "torch"


@dataclass(frozen=True)
class Case:
    """One model x precision x backend x device x batch size (x calibration recipe for INT8).

    ``recipe`` is the calibration method for INT8 cases and empty otherwise; it shows in the id
    only when it is not the default, so default ids stay short and stable.
    """

    model: str
    precision: Precision
    backend: str
    device: str
    batch_size: int
    recipe: str = ""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if (self.precision is Precision.INT8) != bool(self.recipe):
            raise ValueError("an INT8 case needs a calibration recipe and other cases have none")

    @property
    def id(self) -> str:
        parts = [self.model, self.precision.value, self.backend, self.device, f"b{self.batch_size}"]
        if self.recipe and self.recipe != DEFAULT_CALIBRATION:
            parts.append(self.recipe)
        return "-".join(parts)

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
        }


def build_matrix(
    models: Sequence[str],
    precisions: Sequence[Precision],
    backends: Sequence[str],
    devices: dict,
    batch_sizes: Sequence[int],
    calibrations: Sequence[str] = (DEFAULT_CALIBRATION,),
) -> List[Case]:
    """All cases, in a stable order: model, then base before the backends, then precision, batch, recipe.

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
                    recipes = _unique(calibrations) if precision is Precision.INT8 else [""]
                    for recipe in recipes:
                        add(Case(model, precision, backend, devices[backend], batch, recipe))
    return cases


def _unique(items: Iterable) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out

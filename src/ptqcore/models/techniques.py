"""Compression techniques beside PTQ: their names, the ``--ptq-techniques`` values, their settings.

The sister paper of the study ("Deep Learning Model Compression Techniques Performance on Edge
Devices", MATRIK 23(3), 2024) compared post-training quantization with unstructured pruning and
knowledge distillation. ptqcore runs each technique as an axis beside precision: a technique makes
the *base* model of phase 1 and phase 2 (:mod:`ptqcore.models.technique_models`), so every measurement of
a PTQ case (export, backends, size, latency, accuracy, thresholds) applies unchanged, and a pruned
or distilled model is also quantized (``prune80`` + INT8, ``kd_mobilenet_v3_small`` + INT8).

Technique names (they appear in case ids after the model):

* ``ptq``: the model as trained, nothing else (:data:`~ptqcore.case.DEFAULT_TECHNIQUE`; ids unchanged);
* ``prune<L>``: global unstructured L1-magnitude pruning of L% of all Conv/Linear weights
  (:mod:`ptqcore.models.pruning`), L an integer 1-99;
* ``kd_<student>``: a registered model trained from the case model's logits (:mod:`ptqcore.models.distillation`).

``--ptq-techniques`` takes kinds (``ptq``, ``prune``, ``kd``) or ``all`` (= ``ptq,prune,kd``); a kind
expands to names with ``--ptq-prune-levels`` and ``--ptq-kd-student`` (:func:`technique_names`).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from ptqcore.case import DEFAULT_TECHNIQUE

#: The kinds ``--ptq-techniques`` accepts, in the order their cases are listed.
TECHNIQUE_KINDS = ("ptq", "prune", "kd")
_PRUNE = re.compile(r"^prune(\d{1,2})$")
_KD = "kd_"


@dataclass(frozen=True)
class Technique:
    """One parsed technique name: ``kind`` (:data:`TECHNIQUE_KINDS`), the pruning ``level`` in percent
    (prune only) and the ``student`` model name (kd only)."""

    kind: str
    level: Optional[int] = None
    student: Optional[str] = None

    @property
    def name(self) -> str:
        if self.kind == "prune":
            return f"prune{self.level}"
        if self.kind == "kd":
            return f"{_KD}{self.student}"
        return DEFAULT_TECHNIQUE


def parse_technique(name: str) -> Technique:
    """The :class:`Technique` a case's technique name stands for; ValueError for a name that is none."""
    if name == DEFAULT_TECHNIQUE:
        return Technique("ptq")
    match = _PRUNE.match(name)
    if match and 1 <= int(match.group(1)) <= 99:
        return Technique("prune", level=int(match.group(1)))
    if name.startswith(_KD) and len(name) > len(_KD):
        return Technique("kd", student=name[len(_KD):])
    raise ValueError(f"{name!r} is not a technique name (ptq, prune<1-99>, kd_<student>)")


def technique_names(kinds: Sequence[str], prune_levels: Sequence[int], kd_student: str) -> Tuple[str, ...]:
    """The technique names of a run: each kind in ``kinds`` expanded (prune: one per level, in the
    given order; kd: the one student), duplicates dropped."""
    names = []
    for kind in kinds:
        if kind == "ptq":
            names.append(DEFAULT_TECHNIQUE)
        elif kind == "prune":
            names += [Technique("prune", level=level).name for level in prune_levels]
        elif kind == "kd":
            names.append(Technique("kd", student=kd_student).name)
        else:
            raise ValueError(f"unknown technique kind {kind!r}")
    return tuple(dict.fromkeys(names))


# -- option parsers (argparse types: a bad value is a one-line usage error at option parsing) --------

def kinds(text: str) -> Tuple[str, ...]:
    """``--ptq-techniques``: kinds from :data:`TECHNIQUE_KINDS`, comma-separated, or ``all``."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if items == ["all"]:
        return TECHNIQUE_KINDS
    bad = [item for item in items if item not in TECHNIQUE_KINDS]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"unknown technique {', '.join(bad) or repr(text)}; valid:"
                                         f" {', '.join(TECHNIQUE_KINDS)} or all")
    return tuple(dict.fromkeys(items))


def prune_levels(text: str) -> Tuple[int, ...]:
    """``--ptq-prune-levels``: percentages of weights to prune, whole numbers 1-99 (``50,80``)."""
    levels = []
    for item in [item.strip() for item in str(text).split(",") if item.strip()] or [str(text)]:
        try:
            level = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a whole percentage (e.g. 50,80)") from None
        if not 1 <= level <= 99:
            raise argparse.ArgumentTypeError(f"{level} is not a pruning level between 1 and 99 (percent)")
        levels.append(level)
    return tuple(dict.fromkeys(levels))


def student(text: str) -> str:
    """``--ptq-kd-student``: one registered model name (a torchvision classifier or ``tiny_cnn``)."""
    from ptqcore.errors import PtqError
    from ptqcore.models.registry import get_model_spec

    name = str(text).strip()
    try:
        spec = get_model_spec(name)
    except PtqError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if spec.factory is None:
        raise argparse.ArgumentTypeError(f"{name} cannot be trained as a student (no architecture to build)")
    return name


def temperature(text: str) -> float:
    """``--ptq-kd-temperature``: a finite number > 0."""
    from ptqcore.options.parsers import positive_float

    return positive_float(text)


def alpha(text: str) -> float:
    """``--ptq-kd-alpha``: the weight of the soft (teacher) loss, a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1 (the soft-loss weight)")
    return value

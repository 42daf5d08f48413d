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

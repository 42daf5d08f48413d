"""The record figures of a technique run (:mod:`ptqcore.models.techniques`): what pruning or
distillation did, measured against the teacher (the case's model as trained); the technique's model
itself is built by :mod:`ptqcore.models.technique_models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ptqcore.case import DEFAULT_TECHNIQUE, Case
from ptqcore.measure.accuracy import drop_pp
from ptqcore.models.pruning import gzip_size, sparsity
from ptqcore.models.technique_models import INFO_FILE, technique_base_case

if TYPE_CHECKING:  # pragma: no cover
    from ptqcore.suite import Suite


def compression_info(suite: "Suite", model: str, technique: str) -> dict:
    """What ``technique.json`` of the technique's cached model says (the seconds the technique took)."""
    entry = suite.base_model(model, technique).file
    return json.loads((entry.path.parent / INFO_FILE).read_text())


def technique_figures(suite: "Suite", case: Case, file_path: Path, figures: dict) -> dict:
    """The record figures of a technique run (every case of a run with a technique other than ``ptq``).

    ``sparsity``: zero fraction of the Conv/Linear weights of the case's PyTorch model, measured;
    ``size_bytes_compressed``: gzip (level 6) of the case's file; ``size_reduction_compressed``: the
    same of the teacher's base file over it; ``compression_time_s``: the technique's own seconds
    (None for ``ptq``: it has no step before phase 1; phase 1 and 2 are ``export_s`` and ``build_s``).
    """
    if suite.specs[case.model].source not in ("torchvision", "builtin"):
        return {}
    gz = suite.once(("gzip", str(file_path)), lambda: gzip_size(file_path))
    teacher = suite.base_model(case.model)
    gz_teacher = suite.once(("gzip", str(teacher.file.path)), lambda: gzip_size(teacher.file.path))
    out = {
        "sparsity": suite.once(("sparsity", case.model, case.technique),
                                lambda: sparsity(suite.base_model(case.model, case.technique).module)),
        "size_bytes_compressed": gz,
        "size_reduction_compressed": gz_teacher / gz,
        "teacher_case": suite.reference_case(case).id,
        "compression_time_s": None, "compression_reused": None, "accuracy_drop_technique_pp": None,
    }
    if case.technique != DEFAULT_TECHNIQUE:
        info = compression_info(suite, case.model, case.technique)
        own = suite.predictions(technique_base_case(case))
        out.update(compression_time_s=info["compression_time_s"],
                   compression_reused=suite.base_model(case.model, case.technique).file.reused,
                   accuracy_drop_technique_pp=drop_pp(figures["top1_base"], own.top1_accuracy))
    return out

"""The base model of a technique case (a pruned model, a distilled student) and its record figures.

A technique (:mod:`ptqcore.models.techniques`) replaces the model as trained by another PyTorch model,
which then goes through phase 1 and phase 2 like any base model. It is built from the original
model (the *teacher*: the suite's base model of the case's model) and cached in the store like a
base model, keyed by content: the teacher file's SHA-256, the technique and its settings, the data
fingerprint and the training recipe. The build also writes ``technique.json`` beside the weights
with the seconds the technique took (pruning + fine-tuning, or the teacher's logits + the student's
training), so a reused model still reports the time it cost when it was built (``compression_reused``
says which).

Accuracy of every technique case is measured against the teacher's base (``top1_base``,
``reference`` = ``base``, ``teacher_case`` names it); ``accuracy_drop_technique_pp`` is the part of
the drop the technique's own PyTorch model already has.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ptqcore.case import BASE_BACKEND, DEFAULT_TECHNIQUE, Case, Precision
from ptqcore.errors import ModelLoadError
from ptqcore.measure.accuracy import drop_pp
from ptqcore.models.pruning import apply_masks, gzip_size, make_permanent, sparsity
from ptqcore.models.registry import get_model_spec
from ptqcore.models.techniques import parse_technique
from ptqcore.models.training import TrainRecipe, last_linear_name, load_state_dict_file, save_state_dict

if TYPE_CHECKING:  # pragma: no cover
    from ptqcore.suite import BaseModel, Suite

#: Fine-tuning after pruning runs at a tenth of the from-scratch learning rate (a common choice for
#: fine-tuning trained weights), keeps the trained classification layer, and holds pruned weights at 0.
FINETUNE_LR_FACTOR = 0.1
INFO_FILE = "technique.json"


def unsupported_reason(suite: "Suite", case: Case) -> Optional[str]:
    """Why a technique case cannot run (its model has no architecture to prune or to teach from), or None."""
    if case.technique == DEFAULT_TECHNIQUE:
        return None
    spec = suite.specs[case.model]
    if spec.source not in ("torchvision", "builtin"):
        return f"{case.technique} needs a model ptqcore builds and trains; {case.model} is a {spec.source} file"
    return None


def technique_base(suite: "Suite", model: str, technique: str) -> "BaseModel":
    """The cached PyTorch model of ``technique`` applied to ``model``'s base (built now if absent)."""
    from ptqcore.models.train_threads import training_thread_counts
    from ptqcore.suite import BaseModel

    parsed = parse_technique(technique)
    teacher = suite.base_model(model)
    data = suite.dataset(model)
    options = suite.options
    width = teacher.module.get_submodule(last_linear_name(teacher.module)).out_features
    counts = training_thread_counts(options.threads)
    if parsed.kind == "prune":
        recipe = TrainRecipe(epochs=max(1, options.prune_finetune_epochs), lr=TrainRecipe.lr * FINETUNE_LR_FACTOR,
                             seed=options.seed, default_init_head=False)
        settings = {"level": parsed.level, "finetune_epochs": options.prune_finetune_epochs, "head": "kept", "scores": "abs/layer-rms",
                    "recipe": recipe.__dict__ if options.prune_finetune_epochs else None}

        def architecture():
            return copy.deepcopy(teacher.module)

        def make():
            from ptqcore.models.training import train_classifier

            module = architecture()
            apply_masks(module, parsed.level / 100.0)
            if options.prune_finetune_epochs:
                train_classifier(module, data.train_part, data.train, recipe, f"{model} {technique} fine-tuning",
                                 suite.report, thread_counts=counts)
            make_permanent(module)
            return module.eval()
    elif parsed.kind == "kd":
        import torch

        from ptqcore.models.distillation import distill

        recipe = TrainRecipe(epochs=options.kd_epochs, seed=options.seed)
        settings = {"student": parsed.student, "temperature": options.kd_temperature, "alpha": options.kd_alpha,
                    "outputs": width, "recipe": recipe.__dict__}
        student_spec = get_model_spec(parsed.student)

        def architecture():
            return student_spec.factory(width)

        def make():
            torch.manual_seed(options.seed)
            return distill(architecture(), teacher.module, data.train_part, data.train, recipe,
                           options.kd_temperature, options.kd_alpha, f"{parsed.student} from {model}", suite.report,
                           counts)
    else:
        raise ValueError(f"{technique} makes no model of its own")

    def build(path: Path) -> None:
        started = time.perf_counter()
        module = make()
        seconds = time.perf_counter() - started
        save_state_dict(module, path)
        (path.parent / INFO_FILE).write_text(json.dumps({"compression_time_s": seconds, "technique": technique}))

    def load(path: Path):
        module = architecture()
        load_state_dict_file(module, path)
        return module.eval()

    inputs = {"teacher_sha256": teacher.file.sha256, "technique": technique, "settings": settings,
              "data": data.fingerprint, "classes": data.num_classes}
    entry, module = suite.store.load_or_build("technique", inputs, "model.pt", build, load,
                                              f"{technique} model of {model}")
    if not (entry.path.parent / INFO_FILE).is_file():
        raise ModelLoadError(f"{entry.path.parent} lacks {INFO_FILE}", f"delete {entry.path.parent} to rebuild it")
    return BaseModel(module, entry)


def compression_info(suite: "Suite", model: str, technique: str) -> dict:
    """What ``technique.json`` of the technique's cached model says (the seconds the technique took)."""
    entry = suite.base_model(model, technique).file
    return json.loads((entry.path.parent / INFO_FILE).read_text())


def technique_base_case(case: Case) -> Case:
    """The PyTorch base case of ``case``'s technique (its own model, before phase 1)."""
    return Case(case.model, Precision.BASE, BASE_BACKEND, case.device, case.batch_size, technique=case.technique)


def technique_figures(suite: "Suite", case: Case, file_path: Path, figures: dict) -> dict:
    """The record figures of a technique run (every case of a run with a technique other than ``ptq``).

    ``sparsity``: zero fraction of the Conv/Linear weights of the case's PyTorch model, measured;
    ``size_bytes_compressed``: gzip (level 6) of the case's file; ``size_reduction_compressed``: the
    same of the teacher's base file over it; ``compression_time_s``: the technique's own seconds
    (None for ``ptq``: it has no step before phase 1; phase 1 and 2 are ``export_s`` and ``build_s``).
    """
    if suite.specs[case.model].source not in ("torchvision", "builtin"):
        return {}
    gz = suite._once(("gzip", str(file_path)), lambda: gzip_size(file_path))
    teacher = suite.base_model(case.model)
    gz_teacher = suite._once(("gzip", str(teacher.file.path)), lambda: gzip_size(teacher.file.path))
    out = {
        "sparsity": suite._once(("sparsity", case.model, case.technique),
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

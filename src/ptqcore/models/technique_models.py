"""The base model of a technique case (a pruned model, a distilled student); its record figures are
:mod:`ptqcore.study.techniques`'.

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
from typing import Callable, Optional, Tuple

from ptqcore.case import BASE_BACKEND, DEFAULT_TECHNIQUE, Case, Precision
from ptqcore.errors import ModelLoadError
from ptqcore.models.data import DataSet
from ptqcore.models.pruning import apply_masks, make_permanent
from ptqcore.models.registry import ModelSpec, get_model_spec
from ptqcore.models.techniques import parse_technique
from ptqcore.models.training import TrainRecipe, last_linear_name, load_state_dict_file, save_state_dict
from ptqcore.store import ArtifactStore, Entry

#: Fine-tuning after pruning runs at a tenth of the from-scratch learning rate (a common choice for
#: fine-tuning trained weights), keeps the trained classification layer, and holds pruned weights at 0.
FINETUNE_LR_FACTOR = 0.1
INFO_FILE = "technique.json"


def unsupported_reason(spec: ModelSpec, case: Case) -> Optional[str]:
    """Why a technique case cannot run (its model ``spec`` has no architecture to prune or to teach from), or None."""
    if case.technique == DEFAULT_TECHNIQUE:
        return None
    if spec.source not in ("torchvision", "builtin"):
        return f"{case.technique} needs a model ptqcore builds and trains; {case.model} is a {spec.source} file"
    return None


def technique_base(model: str, technique: str, teacher, data: DataSet, options, store: ArtifactStore,
                   report: Callable[[str], None]) -> Tuple[object, Entry]:
    """The cached PyTorch model of ``technique`` applied to ``model``'s base ``teacher`` (its ``module``
    and the :class:`~ptqcore.store.Entry` ``file`` it is kept in), and that model's file: built now if
    absent, on ``data`` with the settings of ``options`` (a
    :class:`~ptqcore.options.suite_options.SuiteOptions`: ``threads``, ``seed``,
    ``prune_finetune_epochs``, ``kd_epochs``, ``kd_temperature``, ``kd_alpha``)."""
    from ptqcore.models.train_threads import training_thread_counts

    parsed = parse_technique(technique)
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
                                 report, thread_counts=counts)
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
                           options.kd_temperature, options.kd_alpha, f"{parsed.student} from {model}", report,
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
    entry, module = store.load_or_build("technique", inputs, "model.pt", build, load,
                                         f"{technique} model of {model}")
    if not (entry.path.parent / INFO_FILE).is_file():
        raise ModelLoadError(f"{entry.path.parent} lacks {INFO_FILE}", f"delete {entry.path.parent} to rebuild it")
    return module, entry


def technique_base_case(case: Case) -> Case:
    """The PyTorch base case of ``case``'s technique (its own model, before phase 1)."""
    return Case(case.model, Precision.BASE, BASE_BACKEND, case.device, case.batch_size, technique=case.technique)

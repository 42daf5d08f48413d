"""Base models: ImageNet weights, a local checkpoint, or training on the chosen data set.

``WEIGHT_MODES``:

* ``train``: random initialisation, the whole network trained on the data set (offline default);
* ``head``: the study's protocol: torchvision's ImageNet weights, backbone frozen, a new
  classification head trained on the data set;
* ``imagenet``: torchvision's ImageNet weights as they are, 1,000 outputs (an image folder of
  ImageNet classes, its folders mapped onto those outputs by :mod:`ptqcore.models.class_map`);
* a directory: ``DIR/<model>.pt`` holds a state dict for the model with the data set's classes.

ImageNet weights come from torch hub's cache (``$TORCH_HOME/hub/checkpoints``) and are downloaded
only where the network allows; offline, a missing file is a :class:`ModelLoadError` naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from ptqcore.errors import ModelLoadError, UsageError, error_line
from ptqcore.models.data import ImageSource
from ptqcore.models.registry import ModelSpec
from ptqcore.models.train_threads import ThreadChooser, training_thread_counts

WEIGHT_MODES = ("auto", "train", "head", "imagenet")

#: Epochs when ``--ptq-train-epochs`` is not given, per weight mode. ``train`` (the whole network
#: from scratch, the digits default): 5. Measured (issue 14, digits at 32x32, evaluation split of
#: 449 images): with :class:`TrainRecipe`'s zeroed head every study model reaches 0.94-0.98 top-1
#: in 4 epochs and 0.95 or more in 5, where the old recipe needed 8 for 0.91-0.99; training time
#: scales with the epochs. ``head`` (a new head on a frozen backbone): 8, as before (not re-measured).
DEFAULT_EPOCHS = {"train": 5, "head": 8}


@dataclass(frozen=True)
class TrainRecipe:
    """How a base model (or its new head) is trained: AdamW with a one-cycle schedule.

    ``default_init_head``: a network trained from scratch starts its classification layer (the last
    ``nn.Linear``) from ``nn.Linear``'s own initialisation (uniform within +-1/sqrt(in_features), as
    a new head in ``head`` mode), not from the model's. Measured reason (issue 14): torchvision
    initialises EfficientNet's last layer uniformly within +-1/sqrt(out_features), a range meant for
    1,000 classes; with digits' 10 the first logits have a standard deviation of 4-5 and a loss of
    5.3-5.8, and training spent its first three of eight epochs recovering (epoch losses 4.8, 3.1,
    1.2). MobileNetV3, DenseNet and ``tiny_cnn`` heads start at that scale already. Every field is
    part of the base model's cache key.
    """

    epochs: int = DEFAULT_EPOCHS["train"]
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    default_init_head: bool = True


def recipe_for(mode: str, epochs: Optional[int], seed: int) -> TrainRecipe:
    """The recipe for weight ``mode``: ``epochs`` if given, else :data:`DEFAULT_EPOCHS`' for the mode."""
    return TrainRecipe(epochs=epochs or DEFAULT_EPOCHS.get(mode, DEFAULT_EPOCHS["train"]), seed=seed)


def resolve_weight_mode(mode: str, dataset_name: str) -> str:
    """``auto`` is ``train`` on digits (no ImageNet weights offline) and ``head`` elsewhere."""
    if mode == "auto":
        return "train" if dataset_name == "digits" else "head"
    if mode in WEIGHT_MODES or Path(mode).expanduser().is_dir():
        return mode
    raise UsageError(
        f"--ptq-weights {mode!r} is neither a mode nor a directory",
        f"use one of {', '.join(WEIGHT_MODES)} or a directory holding <model>.pt state dicts",
    )


def imagenet_state_dict(spec: ModelSpec) -> dict:
    """torchvision's ImageNet weights for ``spec``, from the hub cache or (where allowed) a download."""
    if not spec.weights:
        raise ModelLoadError(f"{spec.name} has no torchvision ImageNet weights", "use --ptq-weights train")
    import torchvision

    weights = torchvision.models.get_weight(spec.weights)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ModelLoadError(
            f"ImageNet weights for {spec.name} are not cached at {cached} and cannot be downloaded ({err})",
            f"copy {Path(weights.url).name} there, or use --ptq-weights train",
        ) from None


def last_linear_name(model) -> str:
    """The name of ``model``'s last ``nn.Linear`` (its classification layer); :class:`ModelLoadError` if none."""
    from torch import nn

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ModelLoadError("the model has no nn.Linear classification head", "use --ptq-weights train")
    return names[-1]


def replace_head(model, num_classes: int):
    """Swap the model's last ``nn.Linear`` for a fresh one with ``num_classes`` outputs; return it."""
    from torch import nn

    last_name = last_linear_name(model)
    parent = model
    *path, leaf = last_name.split(".")
    for part in path:
        parent = getattr(parent, part)
    old = getattr(parent, leaf)
    head = nn.Linear(old.in_features, num_classes)
    setattr(parent, leaf, head)
    return head


def recalibrate_batchnorm(model, batches: Iterable[np.ndarray]) -> None:
    """Replace BatchNorm running statistics by exact averages over ``batches`` (train-mode forward).

    torchvision's MobileNetV3 uses BN momentum 0.01: after a short training its running
    statistics are far from the data and eval-mode accuracy collapses. One pass with cumulative
    averaging fixes that without touching the learned weights.
    """
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for images in batches:
            if len(images) > 1:  # train-mode BN cannot normalise a single 1x1 activation
                model(torch.from_numpy(images))
    for m, momentum in saved:
        m.momentum = momentum
    model.eval()


def adamw(params, recipe: TrainRecipe):
    """AdamW for ``recipe``: PyTorch's fused CPU kernel where this torch has one (2.4 and later).

    Measured reason (issue 14, 1 thread): the default per-tensor AdamW step took 38 / 142 / 283 ms
    for mobilenet_v3_small / efficientnet_b1 / densenet201 (142 to 604 parameter tensors, many
    small ops each), the fused one 11 / 36 / 92 ms: a quarter of a batch-32 training step saved.
    Older torch raises for fused CPU parameters; it then gets the default implementation (same
    algorithm, last bits may differ).
    """
    import torch

    try:
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def train_classifier(
    model,
    source: ImageSource,
    indices: Sequence[int],
    recipe: TrainRecipe,
    label: str,
    report: Callable[[str], None],
    trainable=None,
    thread_counts: Sequence[int] = (),
    loss: Optional[Callable] = None,
):
    """Train ``model`` (or only the parameters of ``trainable``) on ``source[indices]``; return it in eval mode.

    Batches are read from ``source`` as they are needed, so large data sets are never held in
    memory; batches are reshuffled every epoch by a seeded generator.

    ``thread_counts`` are the intra-op thread counts a :class:`ThreadChooser` picks from step by
    step (empty: torch's current count throughout); torch's count is restored afterwards.
    Progress goes to ``report`` once per epoch. With ``trainable`` set, the rest of the network
    stays in eval mode (frozen BatchNorm statistics), as in the study's head-only protocol.

    ``loss(logits, labels, batch_indices)`` is the loss of one batch (``batch_indices``: the items of
    ``source`` in it, e.g. to look up a teacher's logits); None is cross-entropy on the labels, what
    base models are trained with.
    """
    import torch

    saved_threads = torch.get_num_threads()
    chooser = ThreadChooser(thread_counts or [saved_threads])
    try:
        _train_epochs(model, source, indices, recipe, label, report, trainable, chooser, loss)
        if trainable is None:
            torch.set_num_threads(chooser.chosen)
            recalibrate_batchnorm(model, (x for x, _ in source.batches(list(indices), 128)))
    finally:
        torch.set_num_threads(saved_threads)
    model.eval()
    return model


def _train_epochs(model, source, indices, recipe, label, report, trainable, chooser, loss_of=None) -> None:
    import torch
    import torch.nn.functional as F

    if recipe.default_init_head and trainable is None:
        model.get_submodule(last_linear_name(model)).reset_parameters()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    params = list((trainable or model).parameters())
    optimizer = adamw(params, recipe)
    steps_per_epoch = max(1, len(indices) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch
    )
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        if trainable is None:
            model.train()
        else:
            model.eval()
            trainable.train()
        order = [int(i) for i in rng.permutation(np.asarray(indices))]
        total = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            images, labels = source.arrays(batch)
            threads = chooser.next_threads()
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
            step_started = time.perf_counter()
            logits, targets = model(torch.from_numpy(images)), torch.from_numpy(labels)
            loss = F.cross_entropy(logits, targets) if loss_of is None else loss_of(logits, targets, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            chooser.record(time.perf_counter() - step_started)
        threads_note = f" ({chooser.summary()})" if epoch + 1 == recipe.epochs and len(chooser.candidates) > 1 else ""
        report(
            f"training {label}: epoch {epoch + 1}/{recipe.epochs}, loss {total / steps_per_epoch:.3f},"
            f" {time.perf_counter() - started:.0f} s{threads_note}"
        )


def checkpoint_path(directory: str, model_name: str) -> Path:
    """``directory/<model_name>.pt``; :class:`ModelLoadError` naming the file when it is not there."""
    path = Path(directory).expanduser() / f"{model_name}.pt"
    if not path.is_file():
        raise ModelLoadError(f"--ptq-weights {directory} has no {path.name} for model {model_name} ({path} is missing)",
                             f"save it there with torch.save(model.state_dict(), '{path}'), or leave {model_name}"
                             " out of --ptq-models, or use --ptq-weights train")
    return path


def check_checkpoint(directory: str, model_name: str) -> Path:
    """:func:`checkpoint_path`, loaded once (``weights_only``): :class:`ModelLoadError` now, before any
    work, when it is missing or is not a state dict. Whether it fits the architecture is known only
    when the base model is built (:func:`load_state_dict_file`)."""
    import torch

    path = checkpoint_path(directory, model_name)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle errors, zip errors...
        raise ModelLoadError(f"--ptq-weights: {path} does not load as a state dict ({error_line(err)})",
                             "save it with torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelLoadError(f"--ptq-weights: {path} holds a {type(state).__name__}, not a state dict of tensors",
                             "save it with torch.save(model.state_dict(), path), not the model itself")
    return path


def save_state_dict(model, path: Path) -> None:
    """Save ``model``'s state dict with ``torch.save`` (what :func:`load_state_dict_file` reads)."""
    import torch

    torch.save(model.state_dict(), str(path))


def load_state_dict_file(model, path: Path) -> None:
    """Load a state dict saved with ``torch.save`` into ``model``; a clear error if it does not fit."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:  # torch raises RuntimeError, pickle errors, zip errors...
        raise ModelLoadError(
            f"{path} is not a state dict for this model ({error_line(err)})",
            "save it with torch.save(model.state_dict(), path) for the same architecture and classes",
        ) from None


def make_base_model(
    spec: ModelSpec,
    num_classes: int,
    mode: str,
    source: Optional[ImageSource],
    indices: Sequence[int],
    recipe: TrainRecipe,
    report: Callable[[str], None],
    threads: int = 0,
):
    """A PyTorch FP32 classifier for ``spec`` with ``num_classes`` outputs, weights per ``mode``
    (``imagenet``: ImageNet's 1,000 outputs whatever ``num_classes`` is; the suite maps the data
    set's classes onto them, :mod:`ptqcore.models.class_map`).

    Training runs with ``threads`` intra-op threads, or for 0 with :func:`training_thread_counts`'
    choice made step by step.
    """
    import torch

    torch.manual_seed(recipe.seed)
    counts = training_thread_counts(threads)
    if mode == "train":
        model = spec.factory(num_classes)
        return train_classifier(model, source, indices, recipe, spec.name, report, thread_counts=counts)
    if mode in ("imagenet", "head"):
        model = spec.factory(1000)
        model.load_state_dict(imagenet_state_dict(spec))
        if mode == "imagenet":
            return model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        head = replace_head(model, num_classes)
        return train_classifier(model, source, indices, recipe, f"{spec.name} head", report, head, counts)
    model = spec.factory(num_classes)
    load_state_dict_file(model, checkpoint_path(mode, spec.name))
    return model.eval()

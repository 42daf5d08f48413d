"""Base models: ImageNet weights, a local checkpoint, or training on the chosen data set.

``WEIGHT_MODES``:

* ``train``: random initialisation, the whole network trained on the data set (offline default);
* ``head``: the study's protocol: torchvision's ImageNet weights, backbone frozen, a new
  classification head trained on the data set;
* ``imagenet``: torchvision's ImageNet weights as they are, 1,000 outputs (an image folder of
  ImageNet classes, its folders mapped onto those outputs by :mod:`ptqcore.class_map`);
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

from .data import ImageSource
from .errors import ModelLoadError, UsageError, error_line
from .models import ModelSpec

WEIGHT_MODES = ("auto", "train", "head", "imagenet")


@dataclass(frozen=True)
class TrainRecipe:
    """How a base model (or its new head) is trained: AdamW with a one-cycle schedule."""

    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


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


def replace_head(model, num_classes: int):
    """Swap the model's last ``nn.Linear`` for a fresh one with ``num_classes`` outputs; return it."""
    from torch import nn

    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        raise ModelLoadError("the model has no nn.Linear classification head", "use --ptq-weights train")
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


def train_classifier(
    model,
    source: ImageSource,
    indices: Sequence[int],
    recipe: TrainRecipe,
    label: str,
    report: Callable[[str], None],
    trainable=None,
):
    """Train ``model`` (or only the parameters of ``trainable``) on ``source[indices]``; return it in eval mode.

    Batches are read from ``source`` as they are needed, so large data sets are never held in
    memory; batches are reshuffled every epoch by a seeded generator.

    Progress goes to ``report`` once per epoch. With ``trainable`` set, the rest of the network
    stays in eval mode (frozen BatchNorm statistics), as in the study's head-only protocol.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    params = list((trainable or model).parameters())
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
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
            images, labels = source.arrays(order[step * recipe.batch_size : (step + 1) * recipe.batch_size])
            loss = F.cross_entropy(model(torch.from_numpy(images)), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        report(
            f"training {label}: epoch {epoch + 1}/{recipe.epochs}, loss {total / steps_per_epoch:.3f},"
            f" {time.perf_counter() - started:.0f} s"
        )
    if trainable is None:
        recalibrate_batchnorm(model, (x for x, _ in source.batches(list(indices), 128)))
    model.eval()
    return model


def checkpoint_path(directory: str, model_name: str) -> Path:
    path = Path(directory).expanduser() / f"{model_name}.pt"
    if not path.is_file():
        raise ModelLoadError(f"no checkpoint {path}", f"save the state dict of {model_name} there")
    return path


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


def load_torchscript(path: Path):
    """A user's TorchScript classifier, in eval mode; :class:`ModelLoadError` if it does not load."""
    import torch

    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch.jit raises RuntimeError or ValueError depending on the damage
        raise ModelLoadError(
            f"{path} does not load as TorchScript ({error_line(err)})",
            "save the model with torch.jit.save(torch.jit.script(model), path) or give an .onnx file",
        ) from None
    model.eval()
    return model


def make_base_model(
    spec: ModelSpec,
    num_classes: int,
    mode: str,
    source: Optional[ImageSource],
    indices: Sequence[int],
    recipe: TrainRecipe,
    report: Callable[[str], None],
):
    """A PyTorch FP32 classifier for ``spec`` with ``num_classes`` outputs, weights per ``mode``
    (``imagenet``: ImageNet's 1,000 outputs whatever ``num_classes`` is; the suite maps the data
    set's classes onto them, :mod:`ptqcore.class_map`)."""
    import torch

    torch.manual_seed(recipe.seed)
    if mode == "train":
        model = spec.factory(num_classes)
        return train_classifier(model, source, indices, recipe, spec.name, report)
    if mode in ("imagenet", "head"):
        model = spec.factory(1000)
        model.load_state_dict(imagenet_state_dict(spec))
        if mode == "imagenet":
            return model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        head = replace_head(model, num_classes)
        return train_classifier(model, source, indices, recipe, f"{spec.name} head", report, trainable=head)
    model = spec.factory(num_classes)
    load_state_dict_file(model, checkpoint_path(mode, spec.name))
    return model.eval()

"""Unstructured pruning: global L1-magnitude pruning of Conv/Linear weights, and what it changes.

:func:`apply_masks` zeroes the ``level`` fraction of all ``nn.Conv*`` and ``nn.Linear`` weights, the
smallest by magnitude relative to their layer's RMS across those layers together, with the
classification layer left whole
(``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``; biases, BatchNorm and other
parameters are left alone); the technique (:mod:`ptqcore.models.technique_models`) then optionally fine-tunes
the rest for some epochs with the pruned weights held at 0 (the pruning masks stay on while
training), then makes the zeros permanent (``prune.remove``), so the module is a plain dense model
whose state dict, ONNX export and every artifact made from it carry the zeros.

What it does not change: a dense file format stores a zero like any other number, and dense kernels
multiply by it. So ``size_bytes`` and latency of a pruned model on ONNX Runtime's or PyTorch's
dense CPU kernels stay those of the unpruned model; only a compressor sees the zeros
(:func:`gzip_size`, recorded as ``size_bytes_compressed``). ptqcore records both and does not hide
either.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import List, Tuple

#: gzip's default level, used for ``size_bytes_compressed`` (what ``gzip FILE`` gives).
GZIP_LEVEL = 6


def prunable(model) -> List[Tuple[object, str]]:
    """``(module, "weight")`` of every Conv (1d/2d/3d) and Linear layer of ``model``, in module order."""
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [(module, "weight") for module in model.modules() if isinstance(module, kinds)]


def apply_masks(model, level: float) -> None:
    """Attach global L1 pruning masks that zero ``round(level * N)`` weights, N = all :func:`prunable`
    weights (0 < level < 1), ranked across every prunable layer but the classification layer (the
    last ``nn.Linear``) by their magnitude over the RMS of their layer's weights; the masks stay on
    (training keeps those weights at 0) until :func:`make_permanent`. ``sparsity`` over all prunable
    weights is then ``level``.

    ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` ranks by these
    ``importance_scores``; raw magnitudes fail on networks with BatchNorm, which makes a layer's
    weight scale arbitrary (measured, issue 16, digits-trained models, raw global magnitudes):

    * DenseNet-201 at 80%: its 10 x 1920 classification layer lost every weight, the logits became the
      bias alone (loss ln 10 = 2.303 through a fine-tuning epoch: masked weights get no update), top-1
      fell to chance. Hence the classification layer is never pruned (0.1% of the weights there; the
      count pruned elsewhere makes up for it).
    * EfficientNet-B3 at 50%: 11 depthwise convolutions (``features.5``, ``features.6``) lost all their
      weights (fine-tuning loss 2.48). With per-layer RMS scores each of its layers keeps 48-58% of its
      weights at 50% and 19-23% at 80% (DenseNet-201: 49-51%, 20-21%): the ranking is still global.
    """
    from torch.nn.utils import prune

    if not 0.0 < level < 1.0:
        raise ValueError(f"pruning level must be a fraction strictly between 0 and 1, got {level}")
    layers = prunable(model)
    head = _classifier(model)
    pool = [(module, name) for module, name in layers if module is not head]
    if not pool:
        raise ValueError("the model has no Conv or Linear weights to prune besides its classification layer")
    total = sum(getattr(module, name).numel() for module, name in layers)
    count = min(round(level * total), sum(getattr(module, name).numel() for module, name in pool))
    scores = {}
    for module, name in pool:
        weight = getattr(module, name).detach()
        rms = float(weight.pow(2).mean().sqrt())
        scores[(module, name)] = weight.abs() / rms if rms > 0 else weight.abs()
    prune.global_unstructured(pool, pruning_method=prune.L1Unstructured, amount=int(count),
                              importance_scores=scores)


def _classifier(model):
    """The last ``nn.Linear`` of ``model`` (its classification layer), or None."""
    from torch import nn

    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def make_permanent(model) -> None:
    """Fold every pruning mask into its weight (``prune.remove``): a plain module with the zeros baked in."""
    from torch.nn.utils import prune

    for module, name in prunable(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_orig"):
            prune.remove(module, name)


def sparsity(model) -> float:
    """The fraction of zero values among all :func:`prunable` weights of ``model`` (what is measured
    from the weights themselves, not what was asked for)."""
    zeros = total = 0
    for module, name in prunable(model):
        weight = getattr(module, name).detach()
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def gzip_size(path: Path, level: int = GZIP_LEVEL) -> int:
    """Bytes of ``path`` compressed by gzip at ``level`` (6: gzip's default), streamed, nothing written."""

    class _Count:
        size = 0

        def write(self, data) -> int:
            self.size += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    counter = _Count()
    with open(path, "rb") as source, gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=level, mtime=0) as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return counter.size

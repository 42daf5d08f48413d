"""A many-class classifier with peaked logits, made from the session's trained tiny model.

Every ImageNet-pretrained classifier ends in a wide head whose winning logit stands far above the
rest: one value in 1,000 per image, e.g. a logit range of [-4.6, 11.0] where 99% of the values lie
below 5. The digits models have 10 classes, where the winner is 10% of the values, so they cannot
show what a calibration method does to such an output. This model can, and it is built honestly:

* the features are the trained tiny CNN's (``tiny_cnn`` up to its pooling), unchanged;
* the head is 1,000 wide: the trained 10-class layer's rows sit at :func:`class_index` of each
  digit, mapped affinely (which keeps their order) so that the typical losing digit's logit is 0,
  like the background's, and the median winning logit is :data:`WINNER_LOGIT`, as ImageNet
  classifiers' is: a few large positive values, a bounded negative side;
* the other 990 rows are random (seeded), scaled so that the background logits spread with a
  standard deviation near :data:`BACKGROUND_STD` and rarely win on their own.

The labels of the digits data map to :func:`class_index`, so top-1 against them is meaningful too;
the tests compare with the FP32 model's argmax (agreement), which is what quantization must keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Width of the head (ImageNet-1k's).
CLASSES = 1000
#: The median winning logit the trained rows are scaled to (ImageNet classifiers: about 10 to 15).
WINNER_LOGIT = 10.0
#: Standard deviation of the background logits (ImageNet classifiers: about 1 to 2).
BACKGROUND_STD = 1.5


def class_index(digit: int) -> int:
    """Where the head puts digit ``digit``'s logit (spread over the 1,000 outputs)."""
    return 37 + 97 * int(digit)


def many_class_module(tiny_module, images: np.ndarray, seed: int = 0):
    """The tiny CNN with a 1,000-wide peaked head (module docstring). ``images`` (N, 3, H, W) set the
    scales from the features they give (winning logit, feature norm); the module is in eval mode."""
    import torch
    from torch import nn

    features = nn.Sequential(*list(tiny_module.children())[:-1]).eval()
    trained = list(tiny_module.children())[-1]
    with torch.no_grad():
        pooled = features(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        norm = float(pooled.norm(dim=1).mean())
        logits = trained(pooled)
        winner = float(logits.max(dim=1).values.median())
        loser = float(logits.median())  # the typical losing digit's logit
        gain = WINNER_LOGIT / (winner - loser)
        generator = torch.Generator().manual_seed(seed)
        head = nn.Linear(trained.in_features, CLASSES)
        head.weight.copy_(torch.randn(CLASSES, trained.in_features, generator=generator) * (BACKGROUND_STD / norm))
        head.bias.copy_(torch.randn(CLASSES, generator=generator) * 0.3)
        rows = [class_index(digit) for digit in range(trained.out_features)]
        head.weight[rows] = trained.weight * gain
        head.bias[rows] = (trained.bias - loser) * gain
    return nn.Sequential(features, head).eval()


def many_class_onnx(tiny_module, images: np.ndarray, out_path: Path, size: int = 32) -> Path:
    """The many-class model exported as ONNX (ptqcore's own phase 1, opset 17, legacy exporter)."""
    from ptqcore.build.export import onnx_from_torch

    onnx_from_torch(many_class_module(tiny_module, images), Path(out_path), size, 17, "legacy")
    return Path(out_path)

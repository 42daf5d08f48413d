"""Knowledge distillation: a student trained from a teacher's logits (Hinton et al., 2015).

The loss of a batch is ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``
(``s``, ``t``: student and teacher logits, ``y``: labels, ``T``: temperature; ``T^2`` keeps the soft
term's gradients at the scale of the hard one, as in the paper). Training is the base models'
recipe (:func:`ptqcore.models.training.train_classifier`: AdamW, one-cycle schedule, seeded batches, the
per-step thread choice, BatchNorm recalibrated at the end), only with this loss.

The teacher is in eval mode and sees the training images without augmentation, so its logits for an
image never change: they are computed once (:func:`teacher_logits`) and looked up per batch, which
saves one teacher forward pass per student step (for DenseNet-201 most of a step's time).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ptqcore.models.data import ImageSource


def teacher_logits(teacher, source: ImageSource, indices: Sequence[int], batch_size: int = 128) -> dict:
    """``{index: logits}`` of ``teacher`` (eval mode, no gradients) for every item ``indices`` of ``source``."""
    import torch

    teacher.eval()
    out = {}
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = [int(i) for i in indices[start:start + batch_size]]
            images, _ = source.arrays(chunk)
            logits = teacher(torch.from_numpy(images)).float()
            out.update(zip(chunk, logits))
    return out


def kd_loss(student_logits, teacher_logits_, labels, temperature: float, alpha: float):
    """The distillation loss of one batch (module docstring); a scalar tensor."""
    import torch.nn.functional as F

    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits_ / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def kd_loss_for(logits: dict, temperature: float, alpha: float) -> Callable:
    """A ``train_classifier`` loss (``loss(student_logits, labels, batch_indices)``) over precomputed
    teacher ``logits`` (:func:`teacher_logits`)."""
    import torch

    def loss(student_logits, labels, batch):
        target = torch.stack([logits[int(i)] for i in batch])
        return kd_loss(student_logits, target, labels, temperature, alpha)

    return loss


def kl_to_teacher(student, teacher, images: np.ndarray, temperature: float = 1.0) -> float:
    """Mean KL divergence ``KL(teacher || student)`` of the softmax outputs at ``temperature`` over
    ``images`` (both models in eval mode): how far the student's predictions are from the teacher's."""
    import torch
    import torch.nn.functional as F

    student.eval()
    teacher.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        s, t = student(x) / temperature, teacher(x) / temperature
        return float(F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), reduction="batchmean",
                              log_target=True))


def distill(student, teacher, source: ImageSource, indices: Sequence[int], recipe, temperature: float, alpha: float,
            label: str, report: Callable[[str], None], thread_counts: Sequence[int] = ()):
    """Train ``student`` from ``teacher`` on ``source[indices]`` with ``recipe``; return it in eval mode."""
    from ptqcore.models.training import train_classifier

    logits = teacher_logits(teacher, source, indices)
    return train_classifier(student, source, indices, recipe, label, report, thread_counts=thread_counts,
                            loss=kd_loss_for(logits, temperature, alpha))

"""Accuracy in its own pass (never inside a timed loop): top-1, top-5, and agreement with the base."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Tuple

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Top-5 class indices per image (best first) and the true labels, in evaluation order."""

    top5: np.ndarray  # (N, k) int64, k = min(5, classes)
    labels: np.ndarray  # (N,) int64

    @property
    def top1_accuracy(self) -> float:
        return float(np.mean(self.top5[:, 0] == self.labels))

    @property
    def top5_accuracy(self) -> float:
        return float(np.mean(np.any(self.top5 == self.labels[:, None], axis=1)))

    def agreement_top1(self, other: "Predictions") -> float:
        """Fraction of images whose top-1 class is the same in both (same images, same order)."""
        if len(self.labels) != len(other.labels) or not np.array_equal(self.labels, other.labels):
            raise ValueError("predictions were made on different images")
        return float(np.mean(self.top5[:, 0] == other.top5[:, 0]))


def top_k(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` largest logits per row, largest first (ties broken by lower index)."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def predict(infer: Callable[[np.ndarray], np.ndarray], batches: Iterable[Tuple[np.ndarray, np.ndarray]]) -> Predictions:
    """Run ``infer`` over labelled batches and collect top-5 predictions."""
    tops, labels = [], []
    for images, y in batches:
        logits = np.asarray(infer(images), dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] != len(images):
            raise ValueError(f"the model returned shape {logits.shape} for a batch of {len(images)}")
        tops.append(top_k(logits))
        labels.append(y)
    if not tops:
        raise ValueError("the evaluation set is empty")
    return Predictions(np.concatenate(tops), np.concatenate(labels))


def drop_pp(reference_top1: float, top1: float) -> float:
    """Accuracy drop in percentage points (positive when ``top1`` is worse than the reference)."""
    return (reference_top1 - top1) * 100.0

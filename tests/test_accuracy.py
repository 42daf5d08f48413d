"""Top-k, accuracy and agreement arithmetic."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ptqcore.measure.accuracy import Predictions, drop_pp, predict, top_k


@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 12)),
              elements=st.floats(-100, 100, allow_nan=False, width=32)))
def test_top_k_picks_the_largest_in_order(logits):
    top = top_k(logits)
    k = min(5, logits.shape[1])
    assert top.shape == (logits.shape[0], k)
    picked = np.take_along_axis(logits, top, axis=1)
    assert np.all(np.diff(picked, axis=1) <= 0)
    assert np.all(picked[:, -1] >= np.sort(logits, axis=1)[:, -k])


def test_accuracies_and_agreement():
    labels = np.array([0, 1, 2, 3])
    a = Predictions(np.array([[0, 1], [1, 0], [0, 2], [0, 1]]), labels)
    b = Predictions(np.array([[0, 1], [0, 1], [0, 2], [3, 1]]), labels)
    assert a.top1_accuracy == 0.5 and a.top5_accuracy == 0.75
    assert a.agreement_top1(b) == 0.5
    assert drop_pp(a.top1_accuracy, b.top1_accuracy) == pytest.approx(0.0)
    assert drop_pp(0.9, 0.875) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        a.agreement_top1(Predictions(a.top5, labels[::-1]))


def test_predict_checks_model_output_shape():
    batches = [(np.zeros((2, 3, 4, 4), np.float32), np.array([1, 0]))]
    good = predict(lambda x: np.array([[0.0, 1.0], [1.0, 0.0]]), batches)
    assert good.top1_accuracy == 1.0
    with pytest.raises(ValueError, match="shape"):
        predict(lambda x: np.zeros((1, 2)), batches)

"""Training recipe choices made for speed (issue 14): epochs per weight mode, the fused AdamW that
must compute what the default one does, and the fresh classification layer of a from-scratch run."""

import math

import numpy as np
import pytest
import torch

from ptqcore.models.data import ImageSource
from ptqcore.models.registry import get_model_spec
from ptqcore.models.training import DEFAULT_EPOCHS, TrainRecipe, adamw, last_linear_name, recipe_for, train_classifier


def test_epochs_default_per_weight_mode_and_an_explicit_count_wins():
    assert recipe_for("train", None, 0).epochs == DEFAULT_EPOCHS["train"] == 5
    assert recipe_for("head", None, 0).epochs == DEFAULT_EPOCHS["head"] == 8
    assert recipe_for("train", 3, 7) == TrainRecipe(epochs=3, seed=7)


def _steps(optimizer_of, seed=0, steps=5):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    optimizer = optimizer_of(model.parameters())
    data = torch.randn(8, 6)
    for _ in range(steps):
        loss = model(data).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_the_fused_adamw_computes_what_the_default_one_does():
    recipe = TrainRecipe(lr=1e-2, weight_decay=1e-2)
    fused = _steps(lambda params: adamw(params, recipe))
    plain = _steps(lambda params: torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay))
    before = _steps(lambda params: torch.optim.AdamW(params, lr=recipe.lr), steps=0)
    for f, p, b in zip(fused, plain, before):
        assert not torch.equal(p, b)  # the steps moved the weights, so equality below means something
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-6)


def test_adamw_falls_back_where_torch_has_no_fused_cpu_kernel(monkeypatch):
    made = []
    real = torch.optim.AdamW

    def old_torch_adamw(params, fused=None, **settings):  # torch < 2.4: fused CPU parameters raise
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        made.append(settings)
        return real(params, **settings)

    monkeypatch.setattr(torch.optim, "AdamW", old_torch_adamw)
    assert isinstance(adamw(torch.nn.Linear(2, 2).parameters(), TrainRecipe()), real)
    assert made == [{"lr": TrainRecipe().lr, "weight_decay": TrainRecipe().weight_decay}]


def _digit_like_source(n=16, classes=3):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    return ImageSource(n, lambda i: (images[i], i % classes), "random")


@pytest.mark.parametrize("head_only", [False, True])
def test_a_network_trained_from_scratch_starts_its_last_layer_fresh(head_only):
    """With the learning rate at 0 the weights after training are the starting ones: from scratch,
    the last nn.Linear holds nn.Linear's own initialisation (within 1/sqrt(in_features)); when only
    a head is trained, nothing is reset."""
    model = get_model_spec("tiny_cnn").factory(3)
    layer = model.get_submodule(last_linear_name(model))
    with torch.no_grad():
        layer.weight.fill_(5.0)
    trainable = layer if head_only else None
    train_classifier(model, _digit_like_source(), range(16), TrainRecipe(epochs=1, batch_size=8, lr=0.0),
                     "tiny", lambda message: None, trainable=trainable, thread_counts=(1,))
    bound = 1 / math.sqrt(layer.in_features)
    if head_only:
        assert torch.all(layer.weight == 5.0)
    else:
        assert layer.weight.abs().max() <= bound and layer.weight.std() > bound / 10

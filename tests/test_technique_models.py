"""Pruning and distillation on the tiny model: requested sparsity, KL to the teacher, what gzip sees,
and a technique case's records end to end (the warm tiny cache: no base model is trained here)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ptqcore.case import Case, Precision
from ptqcore.models.data import ImageSource
from ptqcore.models.distillation import distill, kd_loss, kl_to_teacher
from ptqcore.models.pruning import apply_masks, gzip_size, make_permanent, prunable, sparsity
from ptqcore.models.registry import get_model_spec
from ptqcore.models.training import TrainRecipe, train_classifier


def _tiny(seed=0):
    import torch

    torch.manual_seed(seed)
    return get_model_spec("tiny_cnn").factory(10)


def _random_source(n=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    return ImageSource(n, lambda i: (images[i], int(labels[i])), "random")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 99))
@example(80)
@example(99)  # more than the weights outside the classification layer: all of those, no more
def test_pruning_reaches_the_requested_sparsity_and_leaves_a_plain_model(level):
    model = _tiny()
    keys = set(model.state_dict())
    head = model[-1].weight.detach().clone()
    total = sum(getattr(module, name).numel() for module, name in prunable(model))
    apply_masks(model, level / 100)
    make_permanent(model)
    expected = min(round(level / 100 * total), total - head.numel())  # counted over all layers, the head kept
    assert round(sparsity(model) * total) == expected
    assert bool((model[-1].weight == head).all())  # the classification layer is never pruned (see apply_masks)
    assert set(model.state_dict()) == keys  # no weight_orig / weight_mask left: exports as the dense model


def test_fine_tuning_keeps_pruned_weights_at_zero():
    model = _tiny()
    apply_masks(model, 0.8)
    recipe = TrainRecipe(epochs=1, batch_size=16, lr=2e-4, default_init_head=False)
    train_classifier(model, _random_source(), list(range(64)), recipe, "tiny", lambda message: None)
    make_permanent(model)
    assert sparsity(model) >= 0.8 - 1e-4


def test_a_pruned_file_compresses_below_its_dense_size_and_below_the_unpruned_one(tmp_path):
    import torch

    dense, pruned = _tiny(), _tiny()
    apply_masks(pruned, 0.8)
    make_permanent(pruned)
    torch.save(dense.state_dict(), str(tmp_path / "dense.pt"))
    torch.save(pruned.state_dict(), str(tmp_path / "pruned.pt"))
    size = (tmp_path / "pruned.pt").stat().st_size
    assert abs(size - (tmp_path / "dense.pt").stat().st_size) < 64  # a dense format keeps every zero
    assert gzip_size(tmp_path / "pruned.pt") < 0.5 * size
    assert gzip_size(tmp_path / "pruned.pt") < 0.5 * gzip_size(tmp_path / "dense.pt")


def test_kd_loss_is_cross_entropy_at_alpha_0_and_scaled_kl_at_alpha_1():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.isclose(kd_loss(s, t, y, 3.0, 0.0), F.cross_entropy(s, y))
    kl = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean")
    assert torch.isclose(kd_loss(s, t, y, 3.0, 1.0), kl * 9, rtol=1e-5)
    assert kd_loss(t, t, y, 3.0, 1.0).abs() < 1e-6


@pytest.fixture(scope="module")
def tiny_suite(copy_tiny_cache, tiny_settings):
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    options = SuiteOptions(models=("tiny",), cache_dir=copy_tiny_cache(), telemetry=False, techniques=("ptq", "prune", "kd"),
                           prune_levels=(80,), prune_finetune_epochs=1, kd_student="tiny_cnn", kd_epochs=1,
                           precisions=(Precision.FP32, Precision.INT8), **tiny_settings)
    return Study(options)


def test_distillation_lowers_the_students_kl_to_the_teacher(tiny_suite):
    teacher = tiny_suite.base_model("tiny_cnn").module
    data = tiny_suite.dataset("tiny_cnn")
    images = data.eval_part.arrays(data.evaluation[:64])[0]
    before = kl_to_teacher(_tiny(seed=1), teacher, images)
    recipe = TrainRecipe(epochs=3, batch_size=16, lr=5e-3, seed=0)  # 60 steps: enough to show, quick to run
    student = distill(_tiny(seed=1), teacher, data.train_part, data.train[:320], recipe, 4.0, 0.7,
                      "tiny student", lambda message: None)
    after = kl_to_teacher(student, teacher, images)
    assert after < 0.6 * before, (before, after)  # measured: 0.76 -> 0.35


def test_technique_cases_record_what_the_technique_did(tiny_suite):
    ids = [case.id for case, _ in tiny_suite.cases()]
    assert "tiny_cnn-prune80-int8-onnxruntime-cpu-b1" in ids and "tiny_cnn-kd_tiny_cnn-fp32-onnxruntime-cpu-b1" in ids
    pruned = Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "entropy", technique="prune80")
    figures = tiny_suite.quality(pruned)
    assert abs(figures["sparsity"] - 0.8) < 1e-3
    assert figures["size_bytes_compressed"] < figures["size_bytes"]
    assert figures["teacher_case"] == "tiny_cnn-base-torch-cpu-b1" and figures["compression_time_s"] > 0
    parts = (figures["accuracy_drop_technique_pp"], figures["accuracy_drop_quantization_pp"],
             figures["accuracy_drop_kernel_pp"])
    assert sum(parts) == pytest.approx(figures["accuracy_drop_pp"], abs=1e-9)  # the three parts add up
    student = tiny_suite.quality(Case("tiny_cnn", Precision.FP32, "onnxruntime", "cpu", 1, technique="kd_tiny_cnn"))
    assert student["top1_base"] == figures["top1_base"]  # both against the teacher's base
    assert student["sparsity"] < 0.01 and student["compression_reused"] is False

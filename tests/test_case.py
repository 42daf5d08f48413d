"""Case ids and the matrix (pure logic)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.case import DEFAULT_CALIBRATION_SIZE, DEFAULT_PRECISIONS, Case, Precision, build_matrix

DEVICES = {"onnxruntime": "cpu", "tensorrt": "cuda"}


def test_case_id_is_readable_and_names_non_default_recipe():
    assert Case("densenet169", Precision.INT8, "onnxruntime", "cpu", 1, "entropy").id == "densenet169-int8-onnxruntime-cpu-b1"
    assert Case("densenet169", Precision.INT8, "onnxruntime", "cpu", 8, "minmax").id == "densenet169-int8-onnxruntime-cpu-b8-minmax"
    assert Case("resnet18", Precision.BASE, "torch", "cpu", 1).id == "resnet18-base-torch-cpu-b1"


def test_case_id_names_a_non_default_calibration_size_and_fields_carry_it():
    int8 = "densenet169-int8-onnxruntime-cpu-b1"
    assert Case("densenet169", Precision.INT8, "onnxruntime", "cpu", 1, "entropy", 128).id == int8  # the study's
    assert Case("densenet169", Precision.INT8, "onnxruntime", "cpu", 1, "entropy", 32).id == int8 + "-cal32"
    assert Case("densenet169", Precision.INT8, "onnxruntime", "cpu", 1, "minmax", 512).id == int8 + "-minmax-cal512"
    # an INT8 case built without a size has the study's; other precisions have none
    assert Case("d", Precision.INT8, "onnxruntime", "cpu", 1, "minmax").calibration_size == DEFAULT_CALIBRATION_SIZE
    assert Case("d", Precision.INT8, "onnxruntime", "cpu", 1, "minmax") == Case("d", Precision.INT8, "onnxruntime",
                                                                                "cpu", 1, "minmax", 128)
    fields = Case("d", Precision.INT8, "onnxruntime", "cpu", 1, "percentile", 32).fields()
    assert (fields["calibration"], fields["calibration_size"]) == ("percentile", 32)
    assert Case("d", Precision.FP16, "onnxruntime", "cpu", 1).fields()["calibration_size"] is None


def test_case_rejects_inconsistent_fields():
    with pytest.raises(ValueError):
        Case("m", Precision.INT8, "onnxruntime", "cpu", 1)
    with pytest.raises(ValueError):
        Case("m", Precision.FP16, "onnxruntime", "cpu", 1, "minmax")
    with pytest.raises(ValueError):
        Case("m", Precision.FP32, "onnxruntime", "cpu", 0)
    with pytest.raises(ValueError, match="only an INT8 case"):
        Case("m", Precision.FP32, "onnxruntime", "cpu", 1, "", 32)
    with pytest.raises(ValueError, match="calibration_size"):
        Case("m", Precision.INT8, "onnxruntime", "cpu", 1, "minmax", 0)


def test_matrix_default_sweep_shape():
    cases = build_matrix(["a", "b"], list(DEFAULT_PRECISIONS), ["onnxruntime"], DEVICES, [1])
    assert [c.id for c in cases[:4]] == [
        "a-base-torch-cpu-b1", "a-fp32-onnxruntime-cpu-b1", "a-fp16-onnxruntime-cpu-b1", "a-int8-onnxruntime-cpu-b1",
    ]
    assert len(cases) == 8


def test_int8_mixed_is_calibrated_like_int8_and_named_after_its_precision():
    cases = build_matrix(["a"], [Precision.INT8, Precision.INT8_MIXED], ["onnxruntime"], DEVICES, [1], ["minmax"])
    assert [c.id for c in cases] == ["a-int8-onnxruntime-cpu-b1-minmax", "a-int8-mixed-onnxruntime-cpu-b1-minmax"]
    assert cases[1].calibration_size == 128 and Precision.INT8_MIXED not in DEFAULT_PRECISIONS
    with pytest.raises(ValueError):
        Case("m", Precision.INT8_MIXED, "onnxruntime", "cpu", 1)


names = st.lists(st.sampled_from(["m1", "m2", "m3"]), min_size=1, max_size=4)
precisions = st.lists(st.sampled_from(list(Precision)), min_size=1, max_size=4)
backends = st.lists(st.sampled_from(["onnxruntime", "tensorrt"]), min_size=1, max_size=3)
batches = st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=3)
recipes = st.lists(st.sampled_from(["minmax", "entropy", "percentile"]), min_size=1, max_size=3)
sizes = st.lists(st.sampled_from([16, 32, 128, 512]), min_size=1, max_size=4)


@given(names, precisions, backends, batches, recipes, sizes)
def test_matrix_is_complete_and_unique(models, precs, backs, bs, cals, cal_sizes):
    cases = build_matrix(models, precs, backs, DEVICES, bs, cals, cal_sizes)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    expected = 0
    base_devices = {DEVICES[b] for b in backs}
    for _ in set(models):
        expected += len(set(bs)) * len(base_devices) if Precision.BASE in precs else 0
        for precision in set(precs) - {Precision.BASE}:
            per = len(set(cals)) * len(set(cal_sizes)) if precision.quantized else 1
            expected += len(set(backs)) * len(set(bs)) * per
    assert len(cases) == expected
    assert all(c.backend == "torch" for c in cases if c.precision is Precision.BASE)
    assert all(c.device == DEVICES[c.backend] for c in cases if c.precision is not Precision.BASE)
    # the base runs on each device of the selected backends, and only there
    assert {c.device for c in cases if c.precision is Precision.BASE} <= base_devices
    int8 = [c for c in cases if c.precision.quantized]
    assert {(c.recipe, c.calibration_size) for c in int8} <= {(m, n) for m in cals for n in cal_sizes}
    assert all(c.calibration_size is None for c in cases if not c.precision.quantized)
    # the id names the size exactly when it is not the study's
    assert all((f"-cal{c.calibration_size}" in c.id) == (c.calibration_size != 128) for c in int8)


def test_sweep_order_keeps_each_method_s_sizes_together():
    cases = build_matrix(["m"], [Precision.INT8], ["onnxruntime"], DEVICES, [1], ["minmax", "entropy"], [32, 128])
    assert [c.id for c in cases] == ["m-int8-onnxruntime-cpu-b1-minmax-cal32", "m-int8-onnxruntime-cpu-b1-minmax",
                                     "m-int8-onnxruntime-cpu-b1-cal32", "m-int8-onnxruntime-cpu-b1"]


def test_base_device_follows_the_backends_not_the_machine():
    """A CPU-only sweep has its base on the CPU even where a GPU is visible; TensorRT adds a CUDA base."""
    cpu = build_matrix(["m"], [Precision.BASE, Precision.FP32], ["onnxruntime"], DEVICES, [1])
    assert [c.id for c in cpu] == ["m-base-torch-cpu-b1", "m-fp32-onnxruntime-cpu-b1"]
    both = build_matrix(["m"], [Precision.BASE], ["onnxruntime", "tensorrt"], DEVICES, [1])
    assert [c.id for c in both] == ["m-base-torch-cpu-b1", "m-base-torch-cuda-b1"]


def test_on_a_gpu_host_the_default_sweeps_base_still_runs_on_the_cpu(monkeypatch, tmp_path):
    """torch seeing a CUDA GPU must not move the base of a CPU-only sweep (issue: GPU hosts gave other
    case ids and divided a GPU base latency by a CPU latency)."""
    import torch

    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    suite = Study(SuiteOptions(models=("tiny",), cache_dir=tmp_path))
    ids = [case.id for case, _ in suite.cases()]
    assert ids == ["tiny_cnn-base-torch-cpu-b1", "tiny_cnn-fp32-onnxruntime-cpu-b1",
                   "tiny_cnn-fp16-onnxruntime-cpu-b1", "tiny_cnn-int8-onnxruntime-cpu-b1"]
    assert suite.reference_case(Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "minmax")).device == "cpu"

"""Thresholds file parsing: defaults, overrides with reasons, and clear errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.errors import ThresholdsError
from ptqcore.options.thresholds import DEFAULTS, load_thresholds, parse_thresholds


def test_defaults_without_a_file():
    thresholds = load_thresholds(None)
    assert thresholds.limits_for("densenet201", "int8", "onnxruntime").max_accuracy_drop_pp == 2.0
    assert thresholds.limits_for("densenet201", "fp16", "onnxruntime").min_size_reduction == 1.8
    assert thresholds.min_base_top1("digits") == 0.90
    assert thresholds.min_base_top1("imagefolder") is None


def test_file_overrides_defaults_and_models(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        """
[defaults.int8]
max_accuracy_drop_pp = 1.0

[datasets.cifar100]
min_base_top1 = 0.5

[[overrides]]
models = "mobilenet_v3_*"
precision = "int8"
max_accuracy_drop_pp = 4.5
reason = "hardswish and SE blocks quantize badly"
"""
    )
    thresholds = load_thresholds(path)
    small = thresholds.limits_for("mobilenet_v3_small", "int8", "onnxruntime")
    assert small.max_accuracy_drop_pp == 4.5
    assert small.min_size_reduction == 3.0  # inherited
    assert small.reason == "hardswish and SE blocks quantize badly"
    other = thresholds.limits_for("densenet169", "int8", "onnxruntime")
    assert other.max_accuracy_drop_pp == 1.0
    assert str(path) in other.reason
    assert thresholds.limits_for("mobilenet_v3_small", "fp16", "onnxruntime") == DEFAULTS["fp16"]
    assert thresholds.min_base_top1("cifar100") == 0.5


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[overrides]]\nmodels = "x"\nmax_accuracy_drop_pp = 1.0\n', "has no reason"),
        ('[[overrides]]\nmodels = "x"\nreason = "r"\n', "sets no limit"),
        ('[defaults.int4]\nmax_accuracy_drop_pp = 1.0\n', "unknown precision"),
        ('[defaults.int8]\nmax_drop = 1.0\n', "unknown key"),
        ('[defaults.int8]\nmax_accuracy_drop_pp = "a lot"\n', "non-negative number"),
        ('[defaults.int8]\nmax_accuracy_drop_pp = -1\n', "non-negative number"),
        ('[datasets.digits]\nmin_base_top1 = 90\n', "between 0 and 1"),
        ('[limits]\n', "unknown table"),
        ('[[overrides]]\nmodels = "x"\nprecision = "int4"\nreason = "r"\nmin_size_reduction = 2\n', "unknown precision"),
        ('[defaults.int8\n', "not readable TOML"),
    ],
)
def test_bad_files_name_the_problem_and_the_fix(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ThresholdsError, match=message) as info:
        load_thresholds(path)
    assert "fix:" in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ThresholdsError, match="does not exist"):
        load_thresholds(tmp_path / "nope.toml")


limit = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(limit, limit, st.sampled_from(["fp32", "fp16", "int8"]))
def test_any_valid_limits_round_trip(drop, reduction, precision):
    document = {"overrides": [{"models": "*", "precision": precision, "reason": "r",
                               "max_accuracy_drop_pp": drop, "min_size_reduction": reduction}]}
    limits = parse_thresholds(document).limits_for("any", precision, "onnxruntime")
    assert (limits.max_accuracy_drop_pp, limits.min_size_reduction, limits.reason) == (drop, reduction, "r")

"""Issue #10 (thresholds): no NaN or infinity anywhere, and names that can never apply are reported."""

import math

import pytest

from ptqcore.cli import main
from ptqcore.errors import ThresholdsError
from ptqcore.models.data import DATASETS
from ptqcore.options.thresholds import CompareLimits, check_names, load_thresholds, parse_thresholds

NOT_FINITE = ["nan", "inf", "-inf", "+nan"]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("table", [
    "[defaults.int8]\nmax_accuracy_drop_pp = {v}\n",
    "[defaults.fp16]\nmin_size_reduction = {v}\n",
    "[defaults.int8]\nmax_kernel_drop_pp = {v}\n",
    '[[overrides]]\nmodels = "*"\nreason = "r"\nmax_accuracy_drop_pp = {v}\n',
    "[datasets.digits]\nmin_base_top1 = {v}\n",
    "[compare]\nlatency_factor = {v}\n",
    "[compare]\np_value = {v}\n",
    "[compare]\naccuracy_pp = {v}\n",
])
def test_not_finite_values_are_one_line_errors(tmp_path, table, value):
    path = tmp_path / "t.toml"
    path.write_text(table.format(v=value))
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    message = str(info.value)
    assert "\n" not in message and "fix:" in message and ("finite" in message or "between 0 and 1" in message)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_compare_limits_refuse_not_finite_values(value):
    with pytest.raises(ValueError, match="not a finite number"):
        CompareLimits(latency_factor=value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_cli_limit_options_refuse_not_finite_values(value, capsys):
    assert main(["compare", "a.json", "b.json", f"--latency-factor={value}"]) == 2
    assert "finite" in capsys.readouterr().err


@pytest.mark.parametrize("payload,message", [
    (b"\xff\xfe[compare]\n", "not UTF-8"),
    (b"x = " + b"[" * 5000, "nested too deeply|not readable TOML"),
])
def test_unreadable_thresholds_files_are_one_line_errors(tmp_path, payload, message):
    path = tmp_path / "t.toml"
    path.write_bytes(payload)
    with pytest.raises(ThresholdsError, match=message) as info:
        load_thresholds(path)
    assert "\n" not in str(info.value)


def thresholds(**document):
    return parse_thresholds(document, "t.toml")


def test_check_names_warns_for_globs_that_match_no_model():
    found = thresholds(overrides=[
        {"models": "mobilenet*", "reason": "r", "max_accuracy_drop_pp": 3.0},
        {"models": "vit_*", "reason": "r", "max_accuracy_drop_pp": 3.0},
    ])
    warnings = check_names(found, ["tiny_cnn", "mobilenet_v3_small"], ["onnxruntime", "tensorrt"], DATASETS)
    assert len(warnings) == 1 and "override #2" in warnings[0] and "'vit_*'" in warnings[0]
    assert check_names(thresholds(), ["tiny_cnn"], ["onnxruntime"], DATASETS) == []


def test_check_names_refuses_unknown_backends_and_data_sets():
    typo = thresholds(overrides=[{"models": "*", "backend": "onnxrutime", "reason": "r", "min_size_reduction": 2}])
    with pytest.raises(ThresholdsError, match="override #1: unknown backend 'onnxrutime'.*fix: use one of onnxruntime"):
        check_names(typo, ["tiny_cnn"], ["onnxruntime", "tensorrt"], DATASETS)
    with pytest.raises(ThresholdsError, match=r"\[datasets.imagenet\]: unknown data set"):
        check_names(thresholds(datasets={"imagenet": {"min_base_top1": 0.7}}), ["tiny_cnn"], ["onnxruntime"], DATASETS)

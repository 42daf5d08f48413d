"""The technique options through the pytest plugin (pytester): ids they collect, usage errors."""

import pytest

pytest_plugins = ["pytester"]

TEST_FILE = """
import pytest

@pytest.mark.ptq_cases(select="compressed")
def test_compressed(case):
    pass

def test_all(case):
    pass
"""


def test_prune_technique_collects_one_case_set_per_level_and_no_ptq_cases(pytester):
    pytester.makepyfile(test_ids=TEST_FILE)
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-models", "tiny", "--ptq-techniques", "prune",
                                           "--ptq-prune-levels", "60,85", "--co", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    ids = {line.split("[", 1)[1].rstrip("]") for line in result.outlines if "::" in line}
    expected = {f"tiny_cnn-prune{level}-{rest}" for level in (60, 85)
                for rest in ("base-torch-cpu-b1", "fp32-onnxruntime-cpu-b1", "fp16-onnxruntime-cpu-b1",
                             "int8-onnxruntime-cpu-b1")}
    assert ids == expected


@pytest.mark.parametrize("option, value, expected", [
    ("--ptq-techniques", "pruning", "unknown technique pruning; valid: ptq, prune, kd or all"),
    ("--ptq-prune-levels", "50,100", "100 is not a pruning level between 1 and 99"),
    ("--ptq-prune-finetune-epochs", "-1", "below the minimum 0"),
    ("--ptq-kd-epochs", "0", "below the minimum 1"),
    ("--ptq-kd-alpha", "2", "2.0 is not between 0 and 1"),
    ("--ptq-kd-temperature", "-3", "finite number > 0"),
])
def test_bad_technique_option_values_are_one_line_usage_errors(pytester, option, value, expected):
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}*{expected}*"])

"""A calibration sweep end to end: ``--ptq-calibration minmax,entropy --ptq-calibration-size 32,128`` on
the session's tiny model makes one INT8 case per method x size, runs one statistics pass per size
(said in the log), calibrates on nested subsets, records both fields, and the report draws it.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptqcore.build.calibration import load_statistics
from ptqcore.results.runfile import load_run_file

pytest_plugins = ["pytester"]

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FAST = ["-p", "ptqcore.plugin", "--ptq-models", "tiny", "--ptq-no-telemetry", "-p", "no:cacheprovider", "-ra"]
INT8 = "tiny_cnn-int8-onnxruntime-cpu-b1"
#: values one image of the tiny model's input holds (3 x 32 x 32 on digits)
INPUT_VALUES = 3 * 32 * 32


@pytest.fixture
def sweep_project(pytester, tiny_cache, tiny_cli_options):
    pytester.path.joinpath("test_thresholds.py").write_text((BENCHMARKS / "test_thresholds.py").read_text())
    return pytester, ["--ptq-cache-dir", str(tiny_cache), *tiny_cli_options], tiny_cache


def test_two_methods_two_sizes_one_statistics_pass_per_size_on_nested_subsets(sweep_project, tmp_path):
    pytester, options, cache = sweep_project
    result = pytester.runpytest_subprocess(
        *FAST, *options, "--ptq-precisions", "int8", "--ptq-calibration", "minmax,entropy",
        "--ptq-calibration-size", "32,128", "-k", "accuracy_drop", "-s", "--benchmark-json", "sweep.json",
    )
    result.assert_outcomes(passed=4)
    log = result.stdout.str()
    # one statistics pass per size, whatever the number of methods
    passes = re.findall(r"built calibration statistics of tiny_cnn on (\d+) images \(one pass for every method\)", log)
    assert sorted(passes) == ["128", "32"], log[-3000:]
    assert len(re.findall(r"built (minmax|entropy) ranges of tiny_cnn", log)) == 4  # one per method x size

    records = {r["case"]: r for r in load_run_file(pytester.path / "sweep.json", allow_incomplete=True).records}
    expected = {INT8 + "-minmax-cal32": ("minmax", 32), INT8 + "-minmax": ("minmax", 128),
                INT8 + "-cal32": ("entropy", 32), INT8: ("entropy", 128)}
    assert {case: (r["calibration"], r["calibration_size"]) for case, r in records.items()} == expected
    assert all(r["status"] == "passed" and r["accuracy_drop_pp"] is not None for r in records.values())

    # the two passes saw 32 and 128 images, and the 32 lie among the 128: every tensor's min/max of
    # the small pass lies within the large pass's (a different sample would fall outside somewhere)
    stats = [load_statistics(path) for path in sorted(cache.glob("statistics/*/statistics.npz"))]
    assert len(stats) == 2
    small, large = sorted(stats, key=lambda s: sum(int(t.hist.sum()) for t in s.values()))
    assert set(small) == set(large)
    counts = {int(t.hist.sum()) for t in small.values()} | {int(t.hist.sum()) for t in large.values()}
    assert 32 * INPUT_VALUES in counts and 128 * INPUT_VALUES in counts
    for name in small:
        assert int(large[name].hist.sum()) == 4 * int(small[name].hist.sum()), name
        assert large[name].minimum <= small[name].minimum and small[name].maximum <= large[name].maximum, name
    assert any(large[n].minimum < small[n].minimum or small[n].maximum < large[n].maximum for n in small)

    # the report draws the sweep: a figure and a table of the drop per method x size. In a child
    # process: pytester drops modules imported during its test, and a half-dropped matplotlib breaks
    # every later figure of the session
    pytest.importorskip("matplotlib")
    code = "import sys; from ptqcore.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "report", str(pytester.path / "sweep.json"), "-o",
                           str(tmp_path / "report")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "figures" / "run1-calibration.png").is_file()
    assert "| model | calibration | drop pp, 32 images | drop pp, 128 images |" in markdown
    for method in ("minmax", "entropy"):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| tiny_cnn | {method} |"))
        drops = [records[INT8 + (f"-{method}" if method == "minmax" else "") + suffix]["accuracy_drop_pp"]
                 for suffix in ("-cal32", "")]
        assert row == f"| tiny_cnn | {method} | {drops[0]:.2f} | {drops[1]:.2f} |"


def test_a_size_larger_than_the_calibration_split_is_a_usage_error_at_collection(sweep_project):
    pytester, options, _ = sweep_project
    result = pytester.runpytest_subprocess(*FAST, *options, "--ptq-calibration-size", "32,5000")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = ("*digits: calibration size 5000 is larger than the calibration split (the train part: 1348 images);"
            " fix: use --ptq-calibration-size between 1 and 1348*")
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str()


def test_each_size_calibrates_on_exactly_its_own_images(tiny_cache, tiny_settings):
    """In process: each size's ranges are those of one pass over exactly that size's images."""
    from ptqcore.build.calibration import collect_statistics, ranges_from_statistics
    from ptqcore.build.quantize import read_ranges
    from ptqcore.case import Case, Precision
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    suite = Study(SuiteOptions(models=("tiny",), cache_dir=tiny_cache, telemetry=False, calibration_sizes=(16, 48),
                               **tiny_settings))
    data = suite.dataset("tiny_cnn")
    found = {}
    for size in (16, 48):
        int8 = suite.int8_inputs(Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "minmax", size))
        np.testing.assert_array_equal(int8.calibration_images, data.calibration_arrays(size))
        method, found[size] = read_ranges(int8.ranges)
        direct = ranges_from_statistics(collect_statistics(int8.prepared_onnx, data.calibration_arrays(size), 16),
                                        "minmax")
        assert method == "minmax" and set(found[size]) == set(direct)
        for name, (low, high) in direct.items():
            assert found[size][name] == (float(np.float32(low)), float(np.float32(high))), name
    assert found[16] != found[48]

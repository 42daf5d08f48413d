"""The pytest plugin, driven through pytester: options, usage errors, skips at collection, JSON records.

The full run copies the project's own benchmark files, so what is tested is what users run.
"""

import json
from pathlib import Path

import pytest

from ptqcore.results.runfile import load_run_file

pytest_plugins = ["pytester"]

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FAST = [
    "-p", "ptqcore.plugin", "--ptq-models", "tiny", "--ptq-compress-rounds", "1",
    "--ptq-compress-warmup", "0", "--ptq-latency-min-time", "0.05", "--ptq-latency-min-rounds", "5",
    "--ptq-warmup-time", "0.01", "-p", "no:cacheprovider", "-ra",
]


@pytest.fixture
def project(pytester, tiny_cache, tiny_cli_options):
    """The benchmark files in a pytester folder, and the options of a private copy of the warm tiny cache
    (epochs and eval size included: they key the cached base model, so no run trains it again)."""
    for source in BENCHMARKS.glob("test_*.py"):
        pytester.path.joinpath(source.name).write_text(source.read_text())
    pytester.path.joinpath("thresholds.toml").write_text(
        '[[overrides]]\nmodels = "tiny_cnn"\nprecision = "int8"\nmin_size_reduction = 1.5\n'
        'reason = "the tiny model is mostly per-layer overhead, not weights"\n'
    )
    return pytester, ["--ptq-cache-dir", str(tiny_cache), *tiny_cli_options]


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--ptq-models", "mobilenetv3", "mobilenet_v3_small"),
        ("--ptq-precisions", "int4", "valid: base, fp32, fp16, int8"),
        ("--ptq-backends", "openvino", "valid: onnxruntime, tensorrt"),
        ("--ptq-batch-sizes", "0", "below the minimum 1"),
        ("--ptq-calibration-size", "32,0", "below the minimum 1"),
        ("--ptq-calibration-size", "32,many", "'many' is not a whole number"),
        ("--ptq-calibration", "kl", "valid: minmax, entropy, percentile"),
        ("--ptq-int8-recipe", "u8u8", "invalid choice"),
        ("--ptq-percentile", "101", "above 100"),
        ("--ptq-latency-min-time", "inf", "finite number > 0"),
        ("--ptq-model-std", "nan,nan,nan", "finite number"),
        ("--ptq-model-std", "0,0,0", "must be > 0"),
    ],
)
def test_bad_option_values_are_usage_errors_that_list_valid_names(pytester, option, value, expected):
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}*{expected}*"])


@pytest.mark.parametrize("target", ["missing-folder/run.json", "."])
def test_an_unusable_benchmark_json_path_is_a_usage_error_before_anything_runs(pytester, target):
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--benchmark-json", target, "--co")
    if target == "." and result.ret != pytest.ExitCode.USAGE_ERROR:
        pytest.skip("this pytest-benchmark opens the path itself and fails first")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--benchmark-json*"])


def test_bad_thresholds_file_is_a_usage_error(pytester):
    pytester.path.joinpath("t.toml").write_text('[[overrides]]\nmodels = "x"\nmax_accuracy_drop_pp = 1\n')
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-thresholds", "t.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*t.toml: override #1: has no reason; fix: add reason*"])


def test_missing_data_root_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-dataset", "cifar100", "--ptq-data-root", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ptq-data-root*nowhere is not a directory*"])


def test_data_set_missing_from_its_root_stops_the_run_before_any_case(project):
    pytester, cache = project
    empty = pytester.mkdir("empty")
    result = pytester.runpytest_subprocess(*FAST, *cache, "--ptq-dataset", "cifar100", "--ptq-data-root", str(empty))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*CIFAR-100 not found under*; fix: put the extracted 'cifar-100-python' folder*"])


def test_broken_model_file_is_a_usage_error(pytester):
    pytester.path.joinpath("broken.onnx").write_bytes(b"not a protobuf")
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-models", "broken.onnx")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.onnx is not a valid ONNX model*; fix: re-export it*"])


def test_ids_and_skips_are_decided_at_collection(project):
    pytester, cache = project
    result = pytester.runpytest_subprocess(
        *FAST, *cache, "--ptq-backends", "onnxruntime,tensorrt", "--collect-only", "-q", "test_inference.py"
    )
    result.stdout.fnmatch_lines([
        "*test_inference.py::test_latency[[]tiny_cnn-base-torch-cpu-b1[]]",
        "*test_inference.py::test_latency[[]tiny_cnn-int8-onnxruntime-cpu-b1[]]",
        "*test_inference.py::test_latency[[]tiny_cnn-int8-tensorrt-cuda-b1[]]",
    ])
    run = pytester.runpytest_subprocess(*FAST, *cache, "--ptq-backends", "tensorrt", "--ptq-precisions", "fp16,int8",
                                        "-rs", "test_inference.py", "--benchmark-json", "skipped.json")
    run.assert_outcomes(skipped=2)
    run.stdout.fnmatch_lines(["SKIPPED*tiny_cnn-fp16-tensorrt-cuda-b1: TensorRT is not installed*"])
    # no benchmark ran, so pytest-benchmark wrote nothing: the records are kept all the same
    output = json.loads(pytester.path.joinpath("skipped.json").read_text())
    assert output["benchmarks"] == []
    assert {r["case"]: r["status"] for r in output["ptqcore"]["records"]} == {
        "tiny_cnn-fp16-tensorrt-cuda-b1": "skipped", "tiny_cnn-int8-tensorrt-cuda-b1": "skipped",
    }
    assert all("TensorRT" in r["skip_reason"] for r in output["ptqcore"]["records"])


def test_json_dir_stores_runs_outside_python_versioned_folders(project):
    pytester, cache = project
    result = pytester.runpytest_subprocess(*FAST, *cache, "--ptq-json-dir", "runs", "-k", "base and latency",
                                           "--ptq-no-telemetry")
    result.assert_outcomes(passed=1)
    (saved,) = pytester.path.joinpath("runs").glob("*.json")
    output = json.loads(saved.read_text())
    assert [b["extra_info"]["case"] for b in output["benchmarks"]] == ["tiny_cnn-base-torch-cpu-b1"]
    assert output["benchmarks"][0]["extra_info"]["resources"] is None  # telemetry was off
    environment = output["machine_info"]["ptqcore"]["environment"]
    assert {"device_model", "l4t", "jetpack", "cuda", "tensorrt", "torch"} <= set(environment)
    assert environment["onnxruntime"] not in ("", "unknown")  # installed wherever these tests run
    # auto (the default) asked the kernels: the header says what it chose, machine_info records why
    probe = output["machine_info"]["ptqcore"]["cpu_isa"]["kernel_probe"]
    assert probe["auto_choice"] == output["machine_info"]["ptqcore"]["int8_recipe"] and probe["error"] is None
    assert set(probe["layouts"]) == {"u8s8", "s8s8", "u8s8-reduce-range"}
    result.stdout.fnmatch_lines([f"ptqcore: INT8 kernel self-test (ONNX Runtime *): *; auto uses"
                                 f" {probe['auto_choice']}"])


def test_full_tiny_run_writes_every_figure_and_record(project):
    pytester, cache = project
    result = pytester.runpytest_subprocess(
        *FAST, *cache, "--ptq-thresholds", "thresholds.toml", "--benchmark-json", "out.json", "--benchmark-save-data",
        "test_compression.py", "test_inference.py", "test_thresholds.py",  # the per-case tests, by name
    )
    # latency x4, compression x3, drop x3, size x3, int8 kernel vs reference x1, base x1
    result.assert_outcomes(passed=4 + 3 + 3 + 3 + 1 + 1)
    output = json.loads(pytester.path.joinpath("out.json").read_text())
    required = {"case", "model", "precision", "backend", "device", "batch_size", "dataset", "export_s", "build_s",
                "size_bytes", "size_bytes_base", "size_reduction", "top1", "top5", "top1_base", "accuracy_drop_pp",
                "agreement_top1", "latency_ms", "throughput_ips", "schema_version"}
    latency = [b for b in output["benchmarks"] if b["name"].startswith("test_latency")]
    assert len(latency) == 4
    for bench in latency:
        info = bench["extra_info"]
        assert required <= set(info), required - set(info)
        assert set(info["latency_ms"]) >= {"p50", "p90", "p99", "mean", "std", "n"}
        assert info["latency_ms"]["n"] == len(bench["stats"]["data"]) == info["latency_rounds"]
        assert info["dataset"] == "digits" and 0 <= info["top1"] <= 1
        if info["precision"] != "base":
            assert info["export_s"] > 0 and info["build_s"] > 0 and info["size_reduction"] > 0
            assert {"export", "build", "inference"} <= set(info["resources"])
        assert info["resources"]["inference"]["rss_bytes_peak"] > 0
        assert "energy_j_per_inference" in info  # None here: this machine has no power sensor
    records = {r.case_id: r for r in load_run_file(pytester.path / "out.json").records}
    assert records["tiny_cnn-int8-onnxruntime-cpu-b1"]["limits"]["reason"].startswith("the tiny model")
    assert output["ptqcore"]["schema_version"] == 2
    session = output["ptqcore"]["session"]  # every selected test ran to its end
    assert session["complete"] and not session["interrupted"] and session["exit_status"] == 0
    assert session["tests_selected"] == session["tests_finished"] == 15
    assert session["cases_by_status"]["incomplete"] == 0 and all(not r["tests_not_finished"] for r in records.values())
    # the second run reuses every artifact and says so
    again = pytester.runpytest_subprocess(*FAST, *cache, "-k", "int8 and latency", "-s", "--ptq-telemetry-samples",
                                          "--benchmark-json", "again.json")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*reused cached int8 onnxruntime artifact of tiny_cnn*"])
    (entry,) = json.loads(pytester.path.joinpath("again.json").read_text())["benchmarks"]
    samples = entry["extra_info"]["resources"]["inference"]["samples"]
    assert len(samples) >= 2 and all("t_s" in s and "psutil" in s["readings"] for s in samples)


def test_a_failing_case_leaves_the_others_and_is_recorded(project):
    pytester, cache = project
    pytester.path.joinpath("strict.toml").write_text(
        '[defaults.fp16]\nmin_size_reduction = 50\n'
        '[[overrides]]\nmodels = "tiny_cnn"\nprecision = "int8"\nmin_size_reduction = 1.5\nreason = "tiny"\n'
    )
    result = pytester.runpytest_subprocess(
        *FAST, *cache, "--ptq-thresholds", "strict.toml", "--benchmark-json", "out.json", "test_thresholds.py",
        "test_inference.py",
    )
    result.assert_outcomes(passed=11, failed=1)  # 4 latency + 3 drop + 3 size + 1 int8 kernel + 1 base, 1 size failed
    result.stdout.fnmatch_lines([
        "*x < 50.0x (defaults in strict.toml)*",
        "FAILED*test_size_reduction[[]tiny_cnn-fp16-onnxruntime-cpu-b1[]]*",
    ])
    records = {r["case"]: r for r in load_run_file(pytester.path / "out.json", allow_incomplete=True).records}
    assert records["tiny_cnn-fp16-onnxruntime-cpu-b1"]["status"] == "failed"
    assert "test_size_reduction" in records["tiny_cnn-fp16-onnxruntime-cpu-b1"]["problems"][0]
    assert records["tiny_cnn-int8-onnxruntime-cpu-b1"]["status"] == "passed"


def test_benchmark_entries_name_their_case_by_id_not_unserializable(pytester, tiny_cache, tiny_cli_options):
    pytester.makepyfile(test_one='''
import pytest
from ptqcore.results.runfile import load_run_file

@pytest.mark.ptq_cases(select="base")
def test_tick(case, benchmark):
    benchmark(lambda: None)
''')
    out = pytester.path / "run.json"
    result = pytester.runpytest_subprocess(*FAST, "--ptq-cache-dir", str(tiny_cache), *tiny_cli_options,
                                           "--benchmark-json", str(out))
    assert result.ret == 0, result.stdout.str()[-2000:]
    import json

    entry = json.loads(out.read_text())["benchmarks"][0]
    assert entry["params"]["case"] == "tiny_cnn-base-torch-cpu-b1"

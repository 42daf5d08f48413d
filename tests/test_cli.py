"""The ``ptqcore`` command: exit codes 0 / 1 / 2, its three outputs, and a clear line for each bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ptqcore.cli import main

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
BASELINE, NOISE, PLANTED = (str(GOLDEN / f"{name}.json") for name in ("baseline", "noise", "planted"))
SLOW, DROP, FAILING = (
    "tiny_cnn-int8-onnxruntime-cpu-b1",
    "tiny_cnn-fp16-onnxruntime-cpu-b1",
    "tiny_cnn-fp32-onnxruntime-cpu-b1",
)


def run(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def golden_doc(name="baseline"):
    return json.loads((GOLDEN / f"{name}.json").read_text())


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# -- verdicts ------------------------------------------------------------------------------------
def test_noise_only_exits_0(capsys):
    code, out, err = run(capsys, BASELINE, NOISE)
    assert code == 0 and err == ""
    assert "REGRESSION" not in out
    assert out.rstrip().endswith("OK: no regression; 0 improved, 26 same, 0 missing")


def test_planted_changes_exit_1_and_are_named(capsys):
    code, out, _ = run(capsys, BASELINE, PLANTED)
    assert code == 1
    lines = [line for line in out.splitlines() if "REGRESSION" in line and line.startswith("tiny_cnn")]
    assert sorted(line.split()[0] + " " + " ".join(line.split()[1:3]) for line in lines) == sorted(
        [f"{DROP} top1 97.10%", f"{SLOW} latency p50", f"{SLOW} latency p90", f"{SLOW} latency p99"]
    )
    assert f"newly failing (regression):\n  {FAILING}: test_latency (call): BuildError" in out
    assert "REGRESSED: 4 metric(s) regressed, 1 case(s) newly failing" in out


def test_the_table_is_aligned(capsys):
    _, out, _ = run(capsys, BASELINE, NOISE)
    table = [line for line in out.splitlines() if line.startswith(("case ", "tiny_cnn"))]
    start = table[0].index("verdict")
    assert all(line[start:].split()[0] in ("verdict", "same") for line in table)


def test_markdown_and_json_outputs(capsys, tmp_path):
    verdicts = tmp_path / "verdicts.json"
    code, out, _ = run(capsys, BASELINE, PLANTED, "--markdown", "--json", verdicts)
    assert code == 1
    assert out.startswith("### ptqcore compare: `planted.json` against `baseline.json`")
    assert "| case | metric | baseline | candidate | change | verdict | note |" in out
    assert f"| {SLOW} | latency p50 |" in out and "**regression**" in out
    assert f"- `{FAILING}`: test_latency (call)" in out and "<details>" in out
    document = json.loads(verdicts.read_text())
    assert document["regressed"] is True and document["limits"]["latency_factor"] == 1.1
    (comparison,) = document["comparisons"]
    assert {(row["case"], row["metric"]) for row in comparison["regressions"]} == {
        (SLOW, "latency p50"),
        (SLOW, "latency p90"),
        (SLOW, "latency p99"),
        (DROP, "top1"),
    }
    assert [item["case"] for item in comparison["newly_failing"]] == [FAILING]


def test_several_candidates_each_get_a_report_and_any_regression_exits_1(capsys):
    code, out, _ = run(capsys, BASELINE, NOISE, PLANTED)
    assert code == 1
    assert out.count("ptqcore compare: ") == 2
    assert "OK: no regression" in out and "REGRESSED" in out


def test_options_set_the_limits(capsys):
    code, out, _ = run(capsys, BASELINE, PLANTED, "--latency-factor", "1.6", "--accuracy-pp", "5")
    assert code == 1  # the newly failing case remains
    assert "REGRESSED: 0 metric(s) regressed, 1 case(s) newly failing" in out
    assert "latency slower than 1.6x" in out


def test_thresholds_file_compare_table_and_options_override_it(capsys, tmp_path):
    toml = write(tmp_path / "t.toml", "[compare]\nlatency_factor = 1.6\naccuracy_pp = 5.0\n")
    _, out, _ = run(capsys, BASELINE, PLANTED, "--thresholds", toml)
    assert "REGRESSED: 0 metric(s) regressed" in out
    _, out, _ = run(capsys, BASELINE, PLANTED, "--thresholds", toml, "--latency-factor", "1.1")
    assert "REGRESSED: 3 metric(s) regressed" in out


def test_a_strict_p_value_hides_nothing_planted_and_a_loose_one_flags_no_noise(capsys):
    assert run(capsys, BASELINE, PLANTED, "--p-value", "1e-12")[0] == 1
    assert run(capsys, BASELINE, NOISE, "--p-value", "0.05", "--size-factor", "1.01", "--build-factor", "1.01")[0] == 0


# -- bad input: exit 2, one line naming the problem and the fix, never a traceback ---------------------
def bad_inputs(tmp_path):
    doc = golden_doc()
    no_ptqcore = {key: value for key, value in doc.items() if key != "ptqcore"}
    schema_3 = {**doc, "ptqcore": {**doc["ptqcore"], "schema_version": 3}}
    other_models = json.loads(json.dumps(doc).replace("tiny_cnn", "other_cnn"))
    text = (GOLDEN / "baseline.json").read_text()
    return {
        "missing file": ([tmp_path / "nope.json", NOISE], "does not exist"),
        "directory": ([tmp_path, NOISE], "is a directory"),
        "empty file": ([write(tmp_path / "empty.json", ""), NOISE], "is empty"),
        "blank file": ([BASELINE, write(tmp_path / "blank.json", "  \n")], "is empty"),
        "not JSON": ([write(tmp_path / "notes.txt", "latency went up\n"), NOISE], "is not valid JSON"),
        "binary": ([BASELINE, tmp_path / "bin.json"], "not UTF-8"),
        "truncated JSON": ([BASELINE, write(tmp_path / "cut.json", text[: len(text) // 2])], "truncated"),
        "JSON list": ([write(tmp_path / "list.json", [1, 2]), NOISE], "not pytest-benchmark JSON"),
        "other JSON": ([write(tmp_path / "other.json", {"results": []}), NOISE], "not pytest-benchmark JSON"),
        "no ptqcore section": ([write(tmp_path / "plain.json", no_ptqcore), NOISE], "no ptqcore schema_version"),
        "unknown schema": (
            [write(tmp_path / "s3a.json", schema_3), write(tmp_path / "s3b.json", schema_3)],
            "schema_version 3, which this ptqcore",
        ),
        "non-integer schema": (
            [write(tmp_path / "sx.json", {**doc, "ptqcore": {**doc["ptqcore"], "schema_version": "1.0"}}), NOISE],
            "unknown ptqcore schema_version",
        ),
        "mismatched schemas": ([BASELINE, write(tmp_path / "s3.json", schema_3)], "different ptqcore schema versions"),
        "no case in common": ([BASELINE, write(tmp_path / "others.json", other_models)], "no case in common"),
        "bad record": (
            [
                write(tmp_path / "rec.json", {**doc, "ptqcore": {"schema_version": 1, "records": [{"case": "x"}]}}),
                NOISE,
            ],
            "lacks status",
        ),
        "bad thresholds file": (
            [BASELINE, NOISE, "--thresholds", write(tmp_path / "t.toml", "[compare]\np_value = 3\n")],
            "probability",
        ),
        "missing thresholds file": (
            [BASELINE, NOISE, "--thresholds", tmp_path / "none.toml"],
            "check the --thresholds path",
        ),
        "unwritable --json": ([BASELINE, NOISE, "--json", tmp_path / "no" / "dir" / "v.json"], "cannot write"),
    }


BAD = (
    "missing file",
    "directory",
    "empty file",
    "blank file",
    "not JSON",
    "binary",
    "truncated JSON",
    "JSON list",
    "other JSON",
    "no ptqcore section",
    "unknown schema",
    "non-integer schema",
    "mismatched schemas",
    "no case in common",
    "bad record",
    "bad thresholds file",
    "missing thresholds file",
    "unwritable --json",
)


def test_every_bad_input_is_tested(tmp_path):
    assert sorted(bad_inputs(tmp_path)) == sorted(BAD)


@pytest.mark.parametrize("name", BAD)
def test_bad_input_exits_2_with_one_clear_line(capsys, tmp_path, name):
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    argv, message = bad_inputs(tmp_path)[name]
    code, out, err = run(capsys, *argv)
    assert code == 2, (name, out, err)
    assert out == ""
    assert message in err
    assert err.startswith("ptqcore compare: error: ") and "; fix: " in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--latency-factor", "0.9"], "below 1"),
        (["--p-value", "2"], "probability"),
        (["--accuracy-pp", "lots"], "is not a number"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_options_exit_2(capsys, argv, message):
    code = main(["compare", *([BASELINE, NOISE] if argv else [BASELINE]), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "compare" in capsys.readouterr().err


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("ptqcore")
    assert script.exists(), "reinstall ptqcore (pip install -e .) to get the console script"
    done = subprocess.run([str(script), "compare", BASELINE, PLANTED], capture_output=True, text=True)
    assert done.returncode == 1 and "REGRESSED" in done.stdout
    done = subprocess.run([str(script), "compare", BASELINE, "/nonexistent.json"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "does not exist" in done.stderr


def test_the_command_imports_no_heavy_library():
    code = "import sys, ptqcore.cli; print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

"""Issue #10 (command line): any unusable input is exit 2 and one line on stderr, never a traceback."""

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptqcore.cli import main

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
BASELINE = GOLDEN / "baseline.json"
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def call(*argv):
    """(exit code, stdout, stderr) of ``ptqcore ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in argv])
    return code, out.getvalue(), err.getvalue()


def assert_unusable(code, err, *words):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("ptqcore ") and "fix:" in err and "Traceback" not in err
    for word in words:
        assert word in err


def both_commands(path, out_dir):
    """(code, stdout, stderr) of compare (``path`` as candidate, then as baseline) and report on ``path``."""
    results = [call("compare", path, BASELINE), call("compare", BASELINE, path), call("report", path, "-o", out_dir)]
    return results


@pytest.mark.parametrize("payload,word", [
    (b"\xff\xfe{}", "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"benchmarks": [], "ptqcore": ' * 100_000 + b"0" + b"}" * 100_000, "nested"),
    (b'{"benchmarks": [], "x": ' + b"9" * 5000 + b"}", "usable JSON"),
    (b'{"benchmarks": ["\\udcff"], "ptqcore": {"schema_version": 1, "records": []}}', "surrogate"),
])
def test_unusable_files_exit_2_with_one_line(tmp_path, payload, word):
    bad = tmp_path / "bad.json"
    bad.write_bytes(payload)
    for code, _, err in both_commands(bad, tmp_path / "out"):
        assert_unusable(code, err, word)


def test_unreadable_file_exits_2(tmp_path, monkeypatch):
    bad = tmp_path / "locked.json"
    bad.write_text(BASELINE.read_text())
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "locked.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    for code, _, err in both_commands(bad, tmp_path / "out"):
        assert_unusable(code, err, "Permission denied")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads and writes whatever the mode says")
def test_file_without_read_permission_exits_2(tmp_path):
    bad = tmp_path / "locked.json"
    bad.write_text(BASELINE.read_text())
    bad.chmod(0)
    for code, _, err in both_commands(bad, tmp_path / "out"):
        assert_unusable(code, err, "Permission denied")


def test_report_into_a_read_only_figures_folder_exits_2(tmp_path, monkeypatch):
    from ptqcore.results.report import figures

    def denied(*args):
        raise PermissionError(13, "Permission denied", str(args[-2]))

    monkeypatch.setattr(figures, "latency", denied)
    code, _, err = call("report", BASELINE, "-o", tmp_path / "out")
    assert_unusable(code, err, "cannot write", "latency.png", "writable -o")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes whatever the mode says")
def test_report_into_a_read_only_figures_folder_for_real(tmp_path):
    (tmp_path / "out" / "figures").mkdir(parents=True)
    (tmp_path / "out" / "figures").chmod(0o555)
    code, _, err = call("report", BASELINE, "-o", tmp_path / "out")
    assert_unusable(code, err, "writable -o")


def test_report_without_matplotlib_says_how_to_install_it(tmp_path):
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from ptqcore.cli import main\n"
              f"sys.exit(main(['report', {str(BASELINE)!r}, '-o', {str(tmp_path / 'out')!r}]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert_unusable(done.returncode, done.stderr, "matplotlib", "install ptqcore[plot]")


def test_compare_json_refuses_to_overwrite_an_input_run(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(BASELINE.read_text())
    original = run.read_bytes()
    for target in (run, tmp_path / "." / "run.json"):
        code, _, err = call("compare", BASELINE, run, "--json", target)
        assert_unusable(code, err, "--json", "is one of the runs being compared")
    link = tmp_path / "link.json"
    link.symlink_to(run)
    assert_unusable(*call("compare", run, BASELINE, "--json", link)[::2], "one of the runs")
    assert run.read_bytes() == original
    code, _, _ = call("compare", BASELINE, run, "--json", tmp_path / "verdicts.json")
    assert code == 0 and json.loads((tmp_path / "verdicts.json").read_text())


# -- fuzzing: exit code 0, 1 or 2 and never a traceback --------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_documents = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
nested = st.builds(lambda depth, opener: opener * depth, st.integers(1, 200_000), st.sampled_from(["[", '{"a":']))


def fuzz_file(folder, payload):
    path = Path(folder) / "input.json"
    path.write_bytes(payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass"))
    return path


def check_all(payload, report=True):
    with tempfile.TemporaryDirectory() as folder:
        path = fuzz_file(folder, payload)
        runs = [call("compare", path, BASELINE), call("compare", BASELINE, path)]
        if report:
            runs.append(call("report", path, "-o", Path(folder) / "out"))
        for code, _, err in runs:
            assert code in (0, 1, 2), err
            assert "Traceback" not in err
            if code == 2:
                assert_unusable(code, err)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(payload):
    check_all(payload)


@FUZZ
@given(json_documents | nested)
def test_arbitrary_json_documents(document):
    check_all(document if isinstance(document, str) else json.dumps(document))


def mutate(document, data):
    """``document`` with one value somewhere inside replaced by an arbitrary JSON value."""
    document = copy.deepcopy(document)
    node = document
    for _ in range(data.draw(st.integers(0, 6))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        children = [k for k in keys if isinstance(node[k], (dict, list)) and node[k]]
        if not children:
            break
        node = node[data.draw(st.sampled_from(children))]
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    if keys:
        node[data.draw(st.sampled_from(keys))] = data.draw(json_documents)
    return document


@FUZZ
@given(st.data())
def test_golden_run_with_one_value_replaced(data):
    """A mostly valid run: compare, and the report without its (slow) drawing, take it or refuse it."""
    from ptqcore.results.report import figures

    document = mutate(json.loads(BASELINE.read_text()), data)
    text = json.dumps(document)
    check_all(text, report=False)
    stubs = {name: (lambda *args, **kwargs: False) for name, value in vars(figures).items()
             if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == figures.__name__}
    with contextlib.ExitStack() as stack:
        for name, stub in stubs.items():
            stack.enter_context(mock.patch.object(figures, name, stub))
        with tempfile.TemporaryDirectory() as folder:
            code, _, err = call("report", fuzz_file(folder, text), BASELINE, "-o", Path(folder) / "out")
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert_unusable(code, err)

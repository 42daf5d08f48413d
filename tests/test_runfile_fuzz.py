"""Fuzzing the gate: a real run file, mutated one field at a time, is refused in one line or compares the same.

The run is the session's complete tiny run (``complete_run`` in ``tests/conftest.py``). Each
example takes the baseline or the candidate (both start as that file), picks one place in it
(a record, a benchmark entry's copy of its record or its samples, the session section, anything
else) and drops, duplicates, changes or retypes it. ``ptqcore compare`` must then either exit 2
with a one-line message (no traceback), or give the same answer as for the unmutated pair: the
same exit code and the same verdict per case and metric, the same cases newly failing, added,
removed, not run or fixed (environment changes and notes may differ: they are what a mutation of
the machine info or a schema note changes, and no verdict depends on them).
"""

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptqcore.cli import main

ANSWER_KEYS = ("regressed", "newly_failing", "added", "removed", "not_run", "fixed")
OPERATIONS = ("drop", "duplicate", "change", "retype")


def paths(value, prefix=()):
    """Every place in a JSON value, as a tuple of keys and indices (the root excluded)."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        out.append(prefix + (key,))
        out.extend(paths(inner, prefix + (key,)))
    return out


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 + 1
    if isinstance(value, float):
        return value * 1.5 + 0.25
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value + value[-1:] if value else [0]
    if isinstance(value, dict):
        return {**value, "zz_added": 1}
    return 0  # None


def retyped(value):
    if isinstance(value, bool):
        return "true"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 0
    if isinstance(value, list):
        return {}
    if isinstance(value, dict):
        return []
    return "null"


def mutate(document, path, operation):
    """A mutated copy of ``document`` (or None where ``operation`` does not apply at ``path``)."""
    document = copy.deepcopy(document)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if operation == "drop":
        del parent[key]
    elif operation == "duplicate":
        if not isinstance(parent, list):
            return None
        parent.insert(key, copy.deepcopy(parent[key]))
    elif operation == "change":
        parent[key] = changed(parent[key])
    else:
        parent[key] = retyped(parent[key])
    return document


def region(path) -> str:
    if path[:2] == ("ptqcore", "records"):
        return "records"
    if path[:1] == ("benchmarks",):
        return "samples" if "data" in path else "entries"
    if path[:2] == ("ptqcore", "session"):
        return "session"
    return "other"


def answer(code, verdicts):
    if verdicts is None:
        return code, None
    comparison = verdicts["comparisons"][0]
    rows = sorted((row["case"], row["metric"], row["verdict"]) for row in comparison["rows"])
    return code, rows, {key: json.dumps(comparison.get(key, verdicts.get(key)), sort_keys=True) for key in ANSWER_KEYS}


def run_compare(baseline, candidate, folder: Path, capsys):
    files = []
    for name, document in (("baseline", baseline), ("candidate", candidate)):
        files.append(folder / f"{name}.json")
        files[-1].write_text(json.dumps(document))
    verdicts = folder / "verdicts.json"
    code = main(["compare", str(files[0]), str(files[1]), "--json", str(verdicts)])
    captured = capsys.readouterr()
    written = json.loads(verdicts.read_text()) if code != 2 and verdicts.exists() else None
    if verdicts.exists():
        verdicts.unlink()
    return code, captured, written


@pytest.fixture(scope="module")
def original(complete_run):
    out, _ = complete_run
    document = json.loads(out.read_text())
    by_region = {}
    for path in paths(document):
        by_region.setdefault(region(path), []).append(path)
    return document, by_region


@pytest.fixture(scope="module")
def reference_answer(original):
    import io
    import sys

    document, _ = original
    with tempfile.TemporaryDirectory() as folder:
        class Capture:
            def readouterr(self):
                return None

        out, err = io.StringIO(), io.StringIO()
        stdout, stderr, sys.stdout, sys.stderr = sys.stdout, sys.stderr, out, err
        try:
            code, _, verdicts = run_compare(document, document, Path(folder), Capture())
        finally:
            sys.stdout, sys.stderr = stdout, stderr
    assert code == 0, err.getvalue()
    return answer(code, verdicts)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_run_file_is_refused_in_one_line_or_compares_the_same(original, reference_answer, capsys, data):
    document, by_region = original
    where = data.draw(st.sampled_from(["records", "records", "entries", "entries", "samples", "session", "other"]))
    path = data.draw(st.sampled_from(by_region[where]))
    operation = data.draw(st.sampled_from(OPERATIONS))
    side = data.draw(st.sampled_from(["baseline", "candidate"]))
    mutated = mutate(document, path, operation)
    if mutated is None:
        return
    pair = (mutated, document) if side == "baseline" else (document, mutated)
    with tempfile.TemporaryDirectory() as folder:
        code, captured, verdicts = run_compare(*pair, Path(folder), capsys)
    described = f"{operation} {'/'.join(map(str, path))} in the {side}"
    if code == 2:
        message = captured.err
        assert message.count("\n") == 1 and message.startswith("ptqcore compare: error: "), (described, message)
        assert "Traceback" not in message and captured.out == "", described
        return
    assert answer(code, verdicts) == reference_answer, f"{described} changed the answer: {captured.out[-1500:]}"

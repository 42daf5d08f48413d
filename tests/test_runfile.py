"""The one run-file loader: every record field survives the plugin's writing, copies are checked equal.

The round trip runs a benchmark through the real plugin (pytester, the tiny model's warm cache),
writes a value of its declared type into every field of :data:`RECORD_FIELDS`, and reads the file
back through :func:`load_run_file`, the loader that compare, report and the acceptance script use.
"""

import copy
import json
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptqcore.case import Case, Precision
from ptqcore.measure.stats import LatencyStats
from ptqcore.records import ENTRY_KINDS, RECORD_FIELDS, RecordBook, kind_of_measurement
from ptqcore.results.runfile import RunFileError, load_run_file, run_file_from_document

pytest_plugins = ["pytester"]

#: Fields the record book owns (identity, outcome) or derives (speed-ups need the other records).
OWNED = {"schema_version", "case", "model", "precision", "backend", "device", "batch_size", "calibration",
         "dataset", "status", "skip_reason", "problems", "tests_not_finished", "speedup_vs_fp32", "speedup_vs_base",
         "technique", "calibration_size"}
SAMPLE_VALUES = {(float,): 0.625, (int,): 7, (str,): "text", (bool,): True, (list,): [1.5, 2.5],
                 (dict,): {"a": 1, "b": [2, 3]}}

WRITER = '''
import json
import pytest
from ptqcore.measure.stats import LatencyStats
from ptqcore.measure.timing import raw_samples

VALUES = json.loads({values!r})

@pytest.mark.ptq_cases(select="int8")
def test_write_every_field(case, ptq_suite, benchmark):
    benchmark.extra_info.update(case=case.id, kind="latency", measurement="latency: a stand-in")
    benchmark.pedantic(lambda: None, rounds=9, iterations=1)
    samples = raw_samples(benchmark)
    ptq_suite.book.update(case, **VALUES, latency_ms=LatencyStats.from_seconds(samples, 1).summary())
'''


def written_values() -> dict:
    return {name: SAMPLE_VALUES[types] for name, types in RECORD_FIELDS.items()
            if name not in OWNED and name != "latency_ms"}


def test_every_field_written_through_the_plugin_reads_back_through_the_loader(pytester, tiny_cache,
                                                                               tiny_cli_options):
    values = written_values()
    pytester.makepyfile(test_writer=WRITER.format(values=json.dumps(values)))
    out = pytester.path / "run.json"
    result = pytester.runpytest_subprocess(
        "-p", "ptqcore.plugin", "--ptq-models", "tiny", "--ptq-cache-dir", str(tiny_cache), *tiny_cli_options,
        "-p", "no:cacheprovider", "--benchmark-json", str(out), "--benchmark-save-data")
    assert result.ret == 0, result.stdout.str()[-2000:]
    run = load_run_file(out)
    (record,) = [r for r in run.records if r["precision"] == "int8"]
    assert set(RECORD_FIELDS) <= set(record), sorted(set(RECORD_FIELDS) - set(record))
    assert {name: record[name] for name in values} == values
    assert record["latency_ms"]["n"] == 9 and record["status"] == "passed"
    (entry,) = run.entries
    assert (entry.kind, entry.case) == ("latency", record["case"]) and len(entry.samples_s) == 9


# -- documents made the way the plugin makes them, then damaged ----------------------------------
CASE = Case("m", Precision.FP32, "onnxruntime", "cpu", 1)


def document(samples=(0.002, 0.001, 0.003, 0.0015, 0.0025), save_data=True, kind="latency") -> dict:
    """A one-case run as the plugin writes it: the record, and a latency entry whose extra_info repeats it."""
    book = RecordBook("digits")
    book.update(CASE, top1=0.9, latency_ms=LatencyStats.from_seconds(list(samples), 1).summary())
    book.passed(CASE)
    (record,) = book.as_list()
    stats = {"median": statistics.median(samples), "rounds": len(samples)}  # as pytest-benchmark computes it
    if save_data:
        stats["data"] = list(samples)
    extra = {**record, "case": CASE.id, "measurement": "latency: one inference, end to end"}
    if kind is not None:
        extra["kind"] = kind
    return {"benchmarks": [{"name": "test_latency", "stats": stats, "extra_info": extra}],
            "ptqcore": {"schema_version": 1, "records": [record]}}


@pytest.mark.parametrize("save_data", [True, False])
def test_a_consistent_run_loads(save_data):
    run = run_file_from_document(document(save_data=save_data))
    assert run.entries_of("latency")[CASE.id].rounds == 5


def test_runs_written_before_entries_had_a_kind_are_read_by_their_measurement():
    run = run_file_from_document(document(kind=None))
    assert run.entries[0].kind == "latency"
    assert [kind_of_measurement(m) for m in ("compression round: phase 1 + phase 2", "latency: x", "other")] == \
        ["compression", "latency", ""]


def test_an_unknown_kind_is_refused():
    with pytest.raises(RunFileError, match="unknown kind 'latencies'"):
        run_file_from_document(document(kind="latencies"))
    assert "latency" in ENTRY_KINDS


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["benchmarks"][0]["extra_info"].update(top1=0.5), "entry's top1 differs from the case's record"),
    (lambda d: d["ptqcore"]["records"][0]["latency_ms"].update(p50=1.0), "is not the median"),
    (lambda d: d["benchmarks"][0]["stats"]["data"].append(0.001), "latency_ms.n is 5 but the benchmark entry has 6"),
    (lambda d: d["benchmarks"][0]["stats"].update(data=None, median=0.01), "is not the median"),
    (lambda d: d["ptqcore"]["records"][0].update(top1="high"), "top1 = \"high\" is not a number"),
    (lambda d: d["ptqcore"]["records"][0].update(problems="one"), "problems = \"one\" is not a list"),
])
def test_copies_that_disagree_and_fields_of_the_wrong_type_are_refused(damage, message):
    damaged = document()
    damage(damaged)
    with pytest.raises(RunFileError, match=message) as caught:
        run_file_from_document(damaged, "run.json")
    assert "\n" not in str(caught.value) and "fix:" in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-5, 1.0), min_size=1, max_size=40), st.booleans())
def test_any_consistent_latency_entry_loads_and_any_edited_p50_is_caught(samples, save_data):
    good = document(samples, save_data=save_data)
    run_file_from_document(good)
    edited = copy.deepcopy(good)
    latency = edited["ptqcore"]["records"][0]["latency_ms"]
    latency["p50"] = latency["p50"] * 1.01
    with pytest.raises(RunFileError):
        run_file_from_document(edited)

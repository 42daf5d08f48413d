"""The one typed record: written by the record book, read back through the loader's check, typed on both sides."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.case import Case, Precision
from ptqcore.records import KEY_FIELDS, Record, RecordBook, RecordError, latency_p50, record_key, with_speedups

CASE = Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "entropy")


def written() -> Record:
    book = RecordBook("digits")
    book.update(CASE, top1=0.9, latency_ms={"p50": 2.0}, eval_images=360)
    book.passed(CASE)
    return book.as_list()[0]


def test_the_book_writes_records_that_read_back_equal_and_typed():
    record = written()
    again = Record.checked(dict(record), "run: record #1")
    assert again == record and isinstance(again, Record)
    assert (again.case_id, again.precision, again.status) == (CASE.id, Precision.INT8, "passed")
    assert again.key == tuple(CASE.fields()[name] if name != "dataset" else "digits" for name in KEY_FIELDS)
    assert again.p50_ms == 2.0 and again.number("top1") == 0.9 and again.number("eval_images") == 360.0
    assert again.number("size_bytes") is None and again.number("artifact_reused") is None


@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("model"), "run: record #1 lacks model"),
    (lambda r: r.update(status="fine"), "unknown status 'fine'"),
    (lambda r: r.update(batch_size=[1]), "non-scalar batch_size"),
    (lambda r: r.update(top1="high"), 'tiny_cnn-int8-onnxruntime-cpu-b1): top1 = "high" is not a number'),
    (lambda r: r.update(artifact_reused=1), "artifact_reused = 1 is not true/false"),
])
def test_a_record_off_the_schema_is_refused_naming_the_field(change, words):
    record = dict(written())
    change(record)
    with pytest.raises(RecordError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Record.checked(record, "run: record #1")


@given(st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=False), st.integers(-5, 5)))
def test_latency_p50_is_a_positive_number_or_none(value):
    p50 = latency_p50({"latency_ms": {"p50": value}})
    positive = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    assert p50 == (float(value) if positive else None)


def test_speed_ups_are_filled_in_once_for_old_records_and_kept_where_written():
    fp32 = {**Case("m", Precision.FP32, "onnxruntime", "cpu", 1).fields(), "dataset": "d", "latency_ms": {"p50": 4.0}}
    int8 = {**Case("m", Precision.INT8, "onnxruntime", "cpu", 1, "entropy").fields(), "dataset": "d",
            "latency_ms": {"p50": 2.0}}
    filled = with_speedups([fp32, int8])
    assert filled[1]["speedup_vs_fp32"] == 2.0 and filled[0]["speedup_vs_fp32"] == 1.0
    kept = with_speedups([fp32, {**int8, "speedup_vs_fp32": 1.5, "speedup_vs_base": None}])
    assert kept[1]["speedup_vs_fp32"] == 1.5 and "speedup_vs_fp32" not in int8  # copies, never in place
    assert record_key(filled[1]) == record_key(int8)

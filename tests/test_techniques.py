"""The technique axis as pure logic: names, option values, case ids, thresholds per technique, records."""

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.case import DEFAULT_PRECISIONS, Case, Precision, build_matrix
from ptqcore.models import techniques
from ptqcore.options import technique_parsers
from ptqcore.options.thresholds import ThresholdsError, default_thresholds, parse_thresholds
from ptqcore.records import KEY_FIELDS, RECORD_FIELDS, speedups, with_technique

DEVICES = {"onnxruntime": "cpu"}


def test_technique_ids_read_naturally_and_ptq_ids_are_unchanged():
    ptq = Case("densenet201", Precision.INT8, "onnxruntime", "cpu", 1, "entropy")
    assert ptq.id == "densenet201-int8-onnxruntime-cpu-b1" and ptq.fields()["technique"] == "ptq"
    assert Case("densenet201", Precision.INT8, "onnxruntime", "cpu", 1, "entropy",
                technique="prune80").id == "densenet201-prune80-int8-onnxruntime-cpu-b1"
    assert Case("densenet201", Precision.FP32, "onnxruntime", "cpu", 1,
                technique="kd_mobilenet_v3_small").id == "densenet201-kd_mobilenet_v3_small-fp32-onnxruntime-cpu-b1"


def test_matrix_repeats_the_cases_per_technique_grouped_by_model():
    names = techniques.technique_names(("ptq", "prune", "kd"), (50, 80), "mobilenet_v3_small")
    assert names == ("ptq", "prune50", "prune80", "kd_mobilenet_v3_small")
    cases = build_matrix(["a", "b"], DEFAULT_PRECISIONS, ["onnxruntime"], DEVICES, [1], techniques=names)
    plain = build_matrix(["a", "b"], DEFAULT_PRECISIONS, ["onnxruntime"], DEVICES, [1])
    assert len(cases) == len(plain) * len(names) and len({c.id for c in cases}) == len(cases)
    assert [c.model for c in cases] == ["a"] * (len(cases) // 2) + ["b"] * (len(cases) // 2)
    assert [c.id for c in cases[:5]] == ["a-base-torch-cpu-b1", "a-fp32-onnxruntime-cpu-b1", "a-fp16-onnxruntime-cpu-b1",
                                         "a-int8-onnxruntime-cpu-b1", "a-prune50-base-torch-cpu-b1"]
    assert build_matrix(["a"], DEFAULT_PRECISIONS, ["onnxruntime"], DEVICES, [1], techniques=("ptq",)) == plain[:4]


@given(st.sampled_from(["ptq"]) | st.integers(1, 99).map(lambda n: f"prune{n}")
       | st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).map(lambda s: f"kd_{s}"))
def test_technique_names_parse_back_to_themselves(name):
    assert techniques.parse_technique(name).name == name


@pytest.mark.parametrize("name", ["prune0", "prune100", "prune", "kd_", "pruning80", "int8"])
def test_what_is_no_technique_name_is_refused(name):
    with pytest.raises(ValueError, match="not a technique name"):
        techniques.parse_technique(name)


def test_option_values_parse_and_bad_ones_name_the_problem():
    assert technique_parsers.kinds("all") == ("ptq", "prune", "kd")
    assert technique_parsers.kinds("prune,kd,prune") == ("prune", "kd")
    assert technique_parsers.prune_levels("50, 80,50") == (50, 80)
    assert technique_parsers.alpha("0") == 0.0 and technique_parsers.alpha("1") == 1.0
    assert technique_parsers.student("tiny_cnn") == "tiny_cnn"
    for parse, text, message in [
        (technique_parsers.kinds, "pruning", "unknown technique pruning; valid: ptq, prune, kd or all"),
        (technique_parsers.kinds, "all,kd", "unknown technique all"),
        (technique_parsers.prune_levels, "100", "100 is not a pruning level between 1 and 99"),
        (technique_parsers.prune_levels, "half", "'half' is not a whole percentage"),
        (technique_parsers.alpha, "1.5", "1.5 is not between 0 and 1"),
        (technique_parsers.alpha, "nan", "nan is not between 0 and 1"),
        (technique_parsers.temperature, "0", "must be a finite number > 0"),
        (technique_parsers.student, "mobilenetv3", "unknown model 'mobilenetv3'"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


def test_technique_limits_add_a_budget_and_the_file_and_overrides_refine_them():
    defaults = default_thresholds()
    ptq = defaults.limits_for("m", "int8", "onnxruntime")
    prune = defaults.limits_for("m", "int8", "onnxruntime", "prune80")
    assert prune.max_accuracy_drop_pp == ptq.max_accuracy_drop_pp + 2.0
    assert prune.min_size_reduction == ptq.min_size_reduction and "prune" in prune.reason
    loaded = parse_thresholds({
        "techniques": {"prune": {"int8": {"max_accuracy_drop_pp": 5.0}}, "prune80": {"int8": {"min_size_reduction": 2.5}},
                       "kd": {"fp32": {"max_accuracy_drop_pp": 9.0}}},
        "overrides": [{"models": "m", "technique": "kd_*", "precision": "fp32", "max_accuracy_drop_pp": 7.0,
                       "reason": "a small student"}],
    })
    limits = loaded.limits_for("m", "int8", "onnxruntime", "prune80")
    assert (limits.max_accuracy_drop_pp, limits.min_size_reduction) == (5.0, 2.5)  # kind's table, then the name's
    assert loaded.limits_for("m", "int8", "onnxruntime", "prune50").min_size_reduction == ptq.min_size_reduction
    assert loaded.limits_for("m", "fp32", "onnxruntime", "kd_x").max_accuracy_drop_pp == 7.0  # the override wins
    assert loaded.limits_for("m", "fp32", "onnxruntime") == defaults.limits_for("m", "fp32", "onnxruntime")


@pytest.mark.parametrize("document, message", [
    ({"techniques": {"quantize": {"int8": {"max_accuracy_drop_pp": 1.0}}}}, "unknown technique"),
    ({"techniques": {"prune": {"int4": {"max_accuracy_drop_pp": 1.0}}}}, "unknown precision"),
    ({"techniques": {"prune": {"int8": {"max_drop": 1.0}}}}, "unknown key"),
    ({"overrides": [{"models": "m", "technique": 3, "max_accuracy_drop_pp": 1.0, "reason": "r"}]}, "technique must be"),
])
def test_bad_technique_thresholds_are_one_line_errors(document, message):
    with pytest.raises(ThresholdsError, match=message):
        parse_thresholds(document)


def test_records_declare_the_technique_fields_and_old_runs_read_as_ptq():
    for name in ("technique", "sparsity", "size_bytes_compressed", "size_reduction_compressed", "compression_time_s",
                 "compression_reused", "accuracy_drop_technique_pp", "teacher_case"):
        assert name in RECORD_FIELDS
    assert "technique" in KEY_FIELDS
    old = {"case": "a-fp32", "precision": "fp32"}
    assert with_technique([old]) == [{**old, "technique": "ptq"}] and "technique" not in old


def test_speedups_stay_within_a_technique():
    def record(technique, precision, p50):
        return {"model": "m", "technique": technique, "precision": precision, "backend": "onnxruntime",
                "device": "cpu", "batch_size": 1, "dataset": "digits", "latency_ms": {"p50": p50}}

    records = [record("ptq", "fp32", 4.0), record("prune80", "fp32", 3.0), record("prune80", "int8", 1.5)]
    assert speedups(records[2], records)["speedup_vs_fp32"] == 2.0


def _record(technique, precision, p50, size_reduction, drop, seconds, status="passed"):
    return {"model": "m", "technique": technique, "precision": precision, "backend": "onnxruntime", "device": "cpu",
            "batch_size": 1, "dataset": "digits", "status": status, "latency_ms": {"p50": p50},
            "size_reduction": size_reduction, "accuracy_drop_pp": drop, "export_s": 1.0, "build_s": 1.0,
            "compression_time_s": seconds, "size_reduction_compressed": size_reduction}


def test_ranking_scores_each_case_against_the_original_fp32_and_orders_by_mean_rank(tmp_path):
    pytest.importorskip("matplotlib")
    from ptqcore.results.report import technique_ranking
    from ptqcore.results.report.content import case_views

    records = [_record("ptq", "fp32", 4.0, 1.0, 0.0, None), _record("ptq", "int8", 2.0, 3.6, 0.5, None),
               _record("prune80", "fp32", 4.0, 1.0, 1.0, 30.0), _record("kd_s", "int8", 0.5, 40.0, 2.0, 60.0),
               {**_record("ptq", "base", 10.0, 1.0, 0.0, None), "status": "passed"}]
    cases = case_views(records)
    assert technique_ranking.is_technique_run(cases)
    ranked = technique_ranking.rows(cases)["m"]
    assert [row.label for row in ranked] == ["ptq int8", "ptq fp32", "kd_s int8", "prune80 fp32"]
    assert ranked[0].mean_rank == pytest.approx((2 + 2 + 2 + 1) / 4)  # equal values share the better rank
    by_label = {row.label: row for row in ranked}
    assert by_label["kd_s int8"].values["latency_reduction_pct"] == pytest.approx(87.5)  # (4 - 0.5) / 4
    assert by_label["prune80 fp32"].values["compression_s"] == pytest.approx(32.0)  # technique + phase 1 + 2
    assert by_label["kd_s int8"].mean_rank == pytest.approx((1 + 1 + 4 + 4) / 4)
    assert "base" not in " ".join(by_label) and len(technique_ranking.table(cases).rows) == 4
    assert technique_ranking.draw(cases, tmp_path / "t.png", "footer") and (tmp_path / "t.png").stat().st_size > 0
    assert not technique_ranking.draw(case_views(records[:2]), tmp_path / "none.png", "footer")

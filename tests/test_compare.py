"""Comparing runs: Mann-Whitney U, the verdict rules, properties, and the golden files made by the suite."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptqcore.errors import PtqError, ThresholdsError
from ptqcore.measure.significance import mann_whitney_u
from ptqcore.measure.stats import LatencyStats
from ptqcore.options.thresholds import CompareLimits, parse_thresholds
from ptqcore.results.compare import (
    IMPROVEMENT,
    MIN_SAMPLES,
    MISSING,
    REGRESSION,
    SAME,
    CompareError,
    compare_runs,
    load_run,
    load_runs,
    run_from_document,
)

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
_spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)


# -- Mann-Whitney U ------------------------------------------------------------------------------
# Reference values from SciPy 1.17.1:
#   scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
# (statistic = U of x). SciPy is not a dependency of ptqcore; these numbers were computed once.
SCIPY_REFERENCE = [
    (
        [1.1, 2.3, 3.7, 4.2, 5.9, 6.4, 7.8, 8.5],
        [4.5, 5.1, 6.7, 7.2, 8.9, 9.3, 10.6, 11.4, 12.8],
        12.0,
        0.02374139453072586,
    ),
    (list(range(1, 11)), list(range(6, 16)), 12.5, 0.005075392315273923),
    ([1, 2, 2, 3, 3, 3, 4, 5], [3, 3, 4, 4, 5, 5, 6, 7, 7], 11.0, 0.01630200829707017),
    ([(i * 37) % 101 for i in range(50)], [(i * 53) % 103 + 10 for i in range(45)], 987.5, 0.30715026232081344),
    (
        [0.51, 0.49, 0.62, 0.55, 0.58, 0.47, 0.53],
        [0.71, 0.66, 0.69, 0.74, 0.7, 0.68, 0.72, 0.65, 0.73, 0.67, 0.75, 0.64],
        0.0,
        0.00045252513347693,
    ),
    ([1.0, 2.0, 3.0] * 5, [1.0, 2.0, 3.0] * 5, 112.5, 1.0),
]


@pytest.mark.parametrize("x, y, u, p", SCIPY_REFERENCE)
def test_mann_whitney_matches_scipy(x, y, u, p):
    result = mann_whitney_u(x, y)
    assert result.u == u
    assert result.p_value == pytest.approx(p, rel=1e-12, abs=1e-15)


def test_mann_whitney_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([1.0, math.nan], [1.0])


def test_all_equal_values_are_not_different():
    assert mann_whitney_u([2.0] * 5, [2.0] * 9).p_value == 1.0


samples = st.lists(st.floats(min_value=1e-6, max_value=1.0, allow_nan=False), min_size=1, max_size=60)


@given(samples, samples, st.sampled_from([0.25, 0.5, 2.0, 1024.0]))
def test_mann_whitney_is_symmetric_and_depends_on_ranks_only(x, y, scale):
    forward, backward = mann_whitney_u(x, y), mann_whitney_u(y, x)
    assert 0.0 <= forward.p_value <= 1.0
    assert forward.p_value == backward.p_value
    assert forward.u + backward.u == len(x) * len(y)
    # a power-of-two scale is exact, so it keeps every order and tie: the result must not move
    assert mann_whitney_u([v * scale for v in x], [v * scale for v in y]) == forward


# -- synthetic runs ----------------------------------------------------------------------------------
def record(model="m", precision="int8", batch=1, status="passed", samples=None, **figures):
    """A ptqcore record (schema 1) with latency_ms computed from ``samples`` (seconds) when given."""
    case = f"{model}-{precision}-onnxruntime-cpu-b{batch}"
    latency = LatencyStats.from_seconds(samples, batch).summary() if samples else None
    return {
        "schema_version": 1,
        "case": case,
        "model": model,
        "precision": precision,
        "backend": "onnxruntime",
        "device": "cpu",
        "batch_size": batch,
        "calibration": "minmax" if precision == "int8" else None,
        "dataset": "digits",
        "status": status,
        "skip_reason": "no TensorRT" if status == "skipped" else None,
        "problems": ["test_x (call): boom"] if status == "failed" else [],
        "latency_ms": latency,
        "top1": None,
        "size_bytes": None,
        "build_s": None,
        "export_s": None,
        **figures,
    }


def document(records, samples=None, versions=None):
    """pytest-benchmark JSON holding ``records``; ``samples`` maps case id -> raw latency samples."""
    entries = [
        {
            "name": f"test_latency[{case}]",
            "group": "latency-b1",
            "extra_info": {"case": case, "measurement": "latency: one inference"},
            "stats": {"rounds": len(data), "data": list(data)},
        }
        for case, data in (samples or {}).items()
    ]
    machine = {"python_version": "3.11.7", "ptqcore": {"versions": versions or {"onnxruntime": "1.18.0"}}}
    return {"machine_info": machine, "benchmarks": entries, "ptqcore": {"schema_version": 1, "records": records}}


def run_of(records, samples=None, name="run", versions=None):
    return run_from_document(document(records, samples, versions), name)


def latency_records(base, slow, n=40, model="m"):
    """A record with n raw samples around ``base`` seconds and the same shape times ``slow``."""
    data = [base * (1 + 0.01 * ((i * 7) % 10)) for i in range(n)]
    scaled = [v * slow for v in data]
    a = record(model=model, samples=data)
    b = record(model=model, samples=scaled)
    return (a, data), (b, scaled)


def verdicts(comparison):
    return {(row.case, row.metric): row.verdict for row in comparison.rows}


def test_significant_slowdown_beyond_the_factor_is_a_regression_and_the_reverse_an_improvement():
    (a, da), (b, db) = latency_records(0.001, 1.3)
    old, new = run_of([a], {a["case"]: da}), run_of([b], {b["case"]: db})
    forward = compare_runs(old, new)
    assert {v for (case, metric), v in verdicts(forward).items() if metric.startswith("latency")} == {REGRESSION}
    assert forward.regressed
    backward = compare_runs(new, old)
    assert {v for v in verdicts(backward).values()} == {IMPROVEMENT}
    assert not backward.regressed


def test_a_slowdown_within_the_factor_is_not_a_regression_even_when_significant():
    (a, da), (b, db) = latency_records(0.001, 1.05)
    comparison = compare_runs(run_of([a], {a["case"]: da}), run_of([b], {b["case"]: db}))
    assert set(verdicts(comparison).values()) == {SAME}
    assert comparison.rows[0].p_value < 0.002


def test_without_raw_samples_the_factor_alone_decides_and_says_so():
    (a, _), (b, _) = latency_records(0.001, 1.3)
    comparison = compare_runs(run_of([a]), run_of([b]))
    rows = [row for row in comparison.rows if row.metric.startswith("latency")]
    assert [row.verdict for row in rows] == [REGRESSION] * 3
    assert all(row.note == "no samples" and row.p_value is None for row in rows)


def test_too_few_samples_count_as_no_samples():
    (a, da), (b, db) = latency_records(0.001, 1.3, n=MIN_SAMPLES - 1)
    comparison = compare_runs(run_of([a], {a["case"]: da}), run_of([b], {b["case"]: db}))
    assert comparison.rows[0].note.startswith("no samples (too few")
    assert comparison.rows[0].verdict == REGRESSION


def test_a_longer_tail_on_a_faster_distribution_is_not_a_p99_regression():
    fast = [0.0010 + 0.00001 * (i % 7) for i in range(200)]
    slow_tail = [v * 0.8 for v in fast[:-4]] + [0.004] * 4  # faster in bulk, four stalls
    a, b = record(samples=fast), record(samples=slow_tail)
    comparison = compare_runs(run_of([a], {a["case"]: fast}), run_of([b], {b["case"]: slow_tail}))
    rows = {row.metric: row for row in comparison.rows}
    assert rows["latency p99"].change > 1.1 and rows["latency p99"].verdict == SAME
    assert "other way" in rows["latency p99"].note
    assert rows["latency p50"].verdict == IMPROVEMENT


def test_accuracy_size_build_and_energy_rules():
    limits = CompareLimits(accuracy_pp=0.5, size_factor=1.1, build_factor=1.5, energy_factor=1.1)
    old = record(top1=0.90, size_bytes=1000, build_s=1.0, export_s=1.0, energy_j_per_inference=0.5)
    new = record(top1=0.894, size_bytes=1200, build_s=1.4, export_s=1.6, energy_j_per_inference=0.56)
    comparison = compare_runs(run_of([old]), run_of([new]), limits)
    got = {metric: verdict for (_, metric), verdict in verdicts(comparison).items()}
    assert got == {"top1": REGRESSION, "size": REGRESSION, "build": SAME, "export": REGRESSION, "energy": REGRESSION}
    top1 = next(row for row in comparison.rows if row.metric == "top1")
    assert top1.change == pytest.approx(-0.6)


def test_a_metric_measured_on_one_side_only_is_missing_not_a_regression():
    comparison = compare_runs(run_of([record(build_s=1.0)]), run_of([record()]))
    (row,) = comparison.rows
    assert (row.metric, row.verdict, row.note) == ("build", MISSING, "not in candidate")
    assert not comparison.regressed


def test_status_changes_and_case_lists():
    old = [record("a"), record("b"), record("c", status="failed"), record("d"), record("e")]
    new = [
        record("a", status="failed"),
        record("b", status="skipped"),
        record("c"),
        record("d", status="not run"),
        record("f"),
    ]
    comparison = compare_runs(run_of(old, name="old"), run_of(new, name="new"))
    assert [case for case, _ in comparison.newly_failing] == ["a-int8-onnxruntime-cpu-b1"]
    assert comparison.newly_failing[0][1] == ("test_x (call): boom",)
    assert comparison.newly_skipped == (("b-int8-onnxruntime-cpu-b1", "no TensorRT"),)
    assert comparison.fixed == ("c-int8-onnxruntime-cpu-b1",)
    assert comparison.not_run == ("d-int8-onnxruntime-cpu-b1",)
    assert comparison.added == ("f-int8-onnxruntime-cpu-b1 (digits)",)
    assert comparison.removed == ("e-int8-onnxruntime-cpu-b1 (digits)",)
    assert comparison.regressed  # newly failing


def test_cases_match_by_their_fields_not_by_machine():
    old = run_of([record(top1=0.9)], versions={"onnxruntime": "1.16.3"})
    new = run_from_document(
        {
            **document([record(top1=0.9)], versions={"onnxruntime": "1.18.0"}),
            "machine_info": {
                "node": "another-board",
                "python_version": "3.8.10",
                "ptqcore": {"versions": {"onnxruntime": "1.18.0"}},
            },
        },
        "new",
    )
    comparison = compare_runs(old, new)
    assert [row.verdict for row in comparison.rows] == [SAME]
    assert ("versions.onnxruntime", "1.16.3", "1.18.0") in comparison.environment_changes
    assert ("python", "3.11.7", "3.8.10") in comparison.environment_changes


def test_environment_changes_name_what_changed_but_not_the_clocks():
    def run(jetpack, mhz):
        doc = document([record(top1=0.9)])
        doc["machine_info"]["ptqcore"]["environment"] = {"jetpack": jetpack, "cpu_mhz": {"cpu0": mhz}, "gpu_mhz": mhz}
        return run_from_document(doc, jetpack)

    comparison = compare_runs(run("5.1.1", 2201), run("6.2", 1984))
    assert comparison.environment_changes == (("environment.jetpack", "5.1.1", "6.2"),)


def test_no_case_in_common_is_an_error():
    with pytest.raises(CompareError, match="no case in common") as info:
        compare_runs(run_of([record("a")], name="a.json"), run_of([record("b")], name="b.json"))
    assert isinstance(info.value, PtqError) and "fix:" in str(info.value) and "\n" not in str(info.value)


def test_a_record_with_an_unknown_status_or_a_non_numeric_figure_is_an_error():
    with pytest.raises(CompareError, match="unknown status"):
        run_of([record(status="exploded")])
    with pytest.raises(CompareError, match="not a number"):
        run_of([record(top1="high")])
    with pytest.raises(CompareError, match="non-scalar model"):
        run_of([{**record(), "model": ["m"]}])
    with pytest.raises(CompareError, match="two records"):
        run_of([record(), record()])


# -- properties ------------------------------------------------------------------------------------
# a few latency levels with small jitter, so that two runs often differ significantly (or not at all)
latency_samples = st.one_of(
    st.none(),
    st.builds(
        lambda level, jitter: [level * (1 + j) for j in jitter],
        st.sampled_from([1e-3, 1.05e-3, 1.3e-3, 2e-3]),
        st.lists(st.floats(min_value=0.0, max_value=0.05), min_size=1, max_size=30),
    ),
)
figure = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e6, allow_nan=False))


@st.composite
def case_results(draw, model):
    data = draw(latency_samples)
    rec = record(
        model=model,
        status=draw(st.sampled_from(["passed", "passed", "passed", "failed", "skipped", "not run"])),
        samples=data,
        top1=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1))),
        size_bytes=draw(figure),
        build_s=draw(figure),
        export_s=draw(figure),
        energy_j_per_inference=draw(figure),
    )
    keep_samples = data is not None and draw(st.sampled_from([True, True, True, False]))
    return rec, (data if keep_samples else None)


@st.composite
def run_pairs(draw):
    """Two runs over models m0..m4: each model is in one run or both (at least one in both)."""
    models = [f"m{i}" for i in range(draw(st.integers(min_value=1, max_value=5)))]
    where = [draw(st.sampled_from(["both", "both", "both", "a", "b"])) for _ in models]
    where[0] = "both"
    runs = []
    for side in ("a", "b"):
        records, samples = [], {}
        for model, present in zip(models, where):
            if present in ("both", side):
                rec, data = draw(case_results(model))
                records.append(rec)
                if data is not None:
                    samples[rec["case"]] = data
        runs.append(run_of(records, samples, name=side))
    return runs


@settings(max_examples=150, deadline=None)
@given(run_pairs())
def test_a_run_compared_with_itself_has_no_regression(pair):
    run = pair[0]
    comparison = compare_runs(run, run)
    assert not comparison.regressed
    assert not comparison.rows_with(REGRESSION) and not comparison.rows_with(IMPROVEMENT)
    assert not (comparison.added or comparison.removed or comparison.newly_failing or comparison.newly_skipped)
    assert not comparison.environment_changes


@settings(max_examples=150, deadline=None)
@given(run_pairs(), st.floats(min_value=1.0, max_value=3.0), st.floats(min_value=0.0, max_value=10.0))
def test_swapping_the_runs_turns_regressions_into_improvements(pair, factor, points):
    a, b = pair
    limits = CompareLimits(latency_factor=factor, accuracy_pp=points, size_factor=factor, build_factor=factor)
    forward, backward = compare_runs(a, b, limits), compare_runs(b, a, limits)
    mirror = {REGRESSION: IMPROVEMENT, IMPROVEMENT: REGRESSION, SAME: SAME, MISSING: MISSING}
    assert {key: mirror[v] for key, v in verdicts(forward).items()} == verdicts(backward)
    assert len(forward.rows_with(REGRESSION)) == len(backward.rows_with(IMPROVEMENT))
    assert (forward.added, forward.removed) == (backward.removed, backward.added)


@settings(max_examples=150, deadline=None)
@given(latency_samples.filter(bool), latency_samples.filter(bool), st.floats(min_value=1.0, max_value=2.0))
def test_swapping_mirrors_latency_verdicts_on_raw_samples(x, y, factor):
    a, b = record(samples=x), record(samples=y)
    old, new = run_of([a], {a["case"]: x}), run_of([b], {b["case"]: y})
    limits = CompareLimits(latency_factor=factor)
    forward, backward = compare_runs(old, new, limits), compare_runs(new, old, limits)
    mirror = {REGRESSION: IMPROVEMENT, IMPROVEMENT: REGRESSION, SAME: SAME}
    assert {key: mirror[v] for key, v in verdicts(forward).items()} == verdicts(backward)
    assert [row.p_value for row in forward.rows] == [row.p_value for row in backward.rows]


# -- golden files made by the suite (tests/data/make_golden.py) ------------------------------------
def golden(name):
    return GOLDEN / f"{name}.json"


def test_golden_files_are_small_and_hold_raw_samples():
    for name in ("baseline", "noise", "planted"):
        path = golden(name)
        assert path.stat().st_size < 100_000
        run = load_run(path)
        assert len(run.cases) == 4 and all(result.samples for result in run.cases.values())
        assert all(len(result.samples) <= make_golden.MAX_SAMPLES for result in run.cases.values())


def test_noise_only_candidate_flags_nothing():
    baseline, noise = load_runs([golden("baseline"), golden("noise")])
    comparison = compare_runs(baseline, noise)
    assert not comparison.regressed
    assert {row.verdict for row in comparison.rows} == {SAME}
    assert not (comparison.added or comparison.removed or comparison.newly_failing or comparison.newly_skipped)


def test_planted_candidate_flags_exactly_the_planted_changes():
    baseline, planted = load_runs([golden("baseline"), golden("planted")])
    comparison = compare_runs(baseline, planted)
    flagged = {(row.case, row.metric) for row in comparison.rows if row.verdict != SAME}
    assert flagged == {
        (make_golden.SLOW_CASE, "latency p50"),
        (make_golden.SLOW_CASE, "latency p90"),
        (make_golden.SLOW_CASE, "latency p99"),
        (make_golden.ACCURACY_CASE, "top1"),
    }
    assert {row.verdict for row in comparison.rows if row.verdict != SAME} == {REGRESSION}
    assert [case for case, _ in comparison.newly_failing] == [make_golden.FAILING_CASE]
    assert comparison.newly_failing[0][1] == (make_golden.FAILING_PROBLEM,)
    top1 = next(row for row in comparison.rows if row.metric == "top1" and row.case == make_golden.ACCURACY_CASE)
    assert top1.change == pytest.approx(-make_golden.ACCURACY_DROP_PP)
    slow = next(row for row in comparison.rows if row.metric == "latency p50" and row.case == make_golden.SLOW_CASE)
    assert slow.p_value < 1e-6


def test_the_planted_slowdown_is_in_the_raw_samples_and_the_record():
    noise, planted = load_run(golden("noise")), load_run(golden("planted"))
    key = next(key for key, result in planted.cases.items() if result.case == make_golden.SLOW_CASE)
    assert planted.cases[key].samples == pytest.approx([v * make_golden.SLOWDOWN for v in noise.cases[key].samples])
    assert planted.cases[key].values["latency p50"] == pytest.approx(noise.cases[key].values["latency p50"] * 1.5)


def test_golden_swap_turns_the_planted_slowdown_into_an_improvement():
    baseline, planted = load_runs([golden("baseline"), golden("planted")])
    backward = compare_runs(planted, baseline)
    assert not backward.rows_with(REGRESSION)
    assert {row.case for row in backward.rows_with(IMPROVEMENT)} == {make_golden.SLOW_CASE, make_golden.ACCURACY_CASE}
    assert backward.fixed == (make_golden.FAILING_CASE,)


def test_golden_without_raw_samples_falls_back_to_the_factor():
    stripped = []
    for name in ("baseline", "planted"):
        doc = json.loads(golden(name).read_text())
        for entry in doc["benchmarks"]:
            entry["stats"].pop("data", None)
        stripped.append(run_from_document(doc, name))
    comparison = compare_runs(*stripped)
    latency = [row for row in comparison.rows if row.metric.startswith("latency")]
    assert all(row.note == "no samples" for row in latency)
    assert {(row.case, row.metric) for row in latency if row.verdict == REGRESSION} >= {
        (make_golden.SLOW_CASE, "latency p50")
    }


# -- the [compare] table of the thresholds file ----------------------------------------------------
def test_thresholds_file_compare_table():
    limits = parse_thresholds({"compare": {"latency_factor": 1.2, "p_value": 0.01, "build_factor": 2}}).compare
    assert limits == CompareLimits(latency_factor=1.2, p_value=0.01, build_factor=2.0)
    assert parse_thresholds({}).compare == CompareLimits()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"latency_factr": 1.2}, "unknown key"),
        ({"latency_factor": 0.9}, "below 1"),
        ({"p_value": 1.5}, "probability"),
        ({"accuracy_pp": -1}, "negative"),
        ({"size_factor": "big"}, "not a number"),
    ],
)
def test_bad_compare_table(table, message):
    with pytest.raises(ThresholdsError, match=message) as info:
        parse_thresholds({"compare": table}, "t.toml")
    assert "fix:" in str(info.value)


# -- reading files -------------------------------------------------------------------------------
def test_every_prefix_of_a_json_file_reads_as_truncated(tmp_path):
    text = json.dumps({"a": [1.5e-05, -2, True, False, None, 'x "y"'], "b": {"c": 12.75}}, indent=1)
    path = tmp_path / "cut.json"
    for end in range(1, len(text)):
        path.write_text(text[:end])
        with pytest.raises(CompareError, match="truncated JSON"):
            load_run(path)


@pytest.mark.parametrize("text", ["latency went up", "[1,]", '{"a": 1} {"b": 2}', "1.2.3", "{'a': 1}"])
def test_malformed_json_is_not_called_truncated(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CompareError, match="is not valid JSON"):
        load_run(path)


def test_planted_file_is_the_noise_file_with_the_plants_of_make_golden():
    noise, planted = (json.loads(golden(name).read_text()) for name in ("noise", "planted"))
    made = json.loads(json.dumps(make_golden.plant(noise)))

    def without_hd15iqr(document):
        # make_golden recomputes stats with the installed pytest-benchmark, whose Stats.hd15iqr
        # differs before 5.0 (4.0.0 returns the first value above the fence); compare ignores it
        for entry in document["benchmarks"]:
            entry["stats"].pop("hd15iqr", None)
        return document

    assert without_hd15iqr(made) == without_hd15iqr(planted)

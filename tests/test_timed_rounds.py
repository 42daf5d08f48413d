"""Timed-round bookkeeping (pure logic): warm-ups owed once per kind of work, and the record
figures of a case's rounds."""

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.measure.timed_rounds import CompressionRound, WarmUps, compression_figures

kinds = st.tuples(st.sampled_from([1, 2]), st.sampled_from(["onnxruntime", "tensorrt"]), st.sampled_from(["fp16", "int8"]))


@given(st.integers(min_value=0, max_value=3), st.lists(kinds, max_size=30))
def test_each_kind_of_work_is_warmed_up_once_per_session(rounds, asked):
    warmups = WarmUps(rounds)
    owed = [warmups.due(kind) for kind in asked]
    firsts = [asked.index(kind) == i for i, kind in enumerate(asked)]
    assert owed == [rounds if first else 0 for first in firsts]


def test_negative_warm_ups_are_refused():
    with pytest.raises(ValueError):
        WarmUps(-1)


seconds = st.floats(min_value=1e-3, max_value=100.0)


@given(st.lists(seconds, max_size=5), st.lists(st.tuples(seconds, st.none() | seconds), min_size=1, max_size=5))
def test_figures_are_the_medians_of_each_phase_and_the_last_rounds_resources(exports, builds):
    one = [CompressionRound(e, None, {"export": {"n": i}, "total": {}}) for i, e in enumerate(exports)]
    two = [CompressionRound(None, b, {"build": {"n": i}, "total": {}}, c) for i, (b, c) in enumerate(builds)]
    figures = compression_figures(one, two, {"inference": {"kept": True}})
    assert figures["export_s"] == (statistics.median(exports) if exports else None)
    assert figures["build_s"] == statistics.median([b for b, _ in builds])
    calibrations = [c for _, c in builds if c is not None]
    assert figures["calibration_s_rounds"] == (calibrations or None)
    assert figures["resources"]["build"] == {"n": len(builds) - 1} and figures["resources"]["inference"] == {"kept": True}
    assert ("export" in figures["resources"]) == bool(exports) and "total" not in figures["resources"]

"""Latency statistics and round planning (pure logic, property-tested)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.measure.stats import LatencyStats, percentile, plan_rounds

samples = st.lists(st.floats(min_value=1e-6, max_value=10.0, allow_nan=False), min_size=1, max_size=200)


@given(samples, st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy_linear(values, q):
    ordered = sorted(values)
    assert percentile(ordered, q) == pytest.approx(float(np.percentile(ordered, q)), rel=1e-9, abs=1e-12)


@given(samples, st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_percentile_is_monotone_in_q(values, q1, q2):
    ordered = sorted(values)
    low, high = sorted((q1, q2))
    assert percentile(ordered, low) <= percentile(ordered, high) + 1e-12


@given(samples, st.integers(min_value=1, max_value=64))
def test_latency_stats_are_ordered_and_consistent(values, batch):
    stats = LatencyStats.from_seconds(values, batch)
    tol = 1e-9
    assert stats.n == len(values)
    assert stats.min - tol <= stats.p50 <= stats.p90 + tol <= stats.p99 + 2 * tol <= stats.max + 3 * tol
    assert stats.min - tol <= stats.mean <= stats.max + tol
    assert stats.std >= 0
    assert stats.throughput_ips == pytest.approx(batch * 1000.0 / stats.mean)
    assert stats.min == pytest.approx(min(values) * 1000)


def test_latency_stats_known_values():
    stats = LatencyStats.from_seconds([0.001, 0.002, 0.003, 0.004], batch_size=2)
    assert stats.p50 == pytest.approx(2.5)
    assert stats.mean == pytest.approx(2.5)
    assert stats.std == pytest.approx(math.sqrt(5 / 3))
    assert stats.throughput_ips == pytest.approx(800.0)
    assert set(stats.summary()) >= {"p50", "p90", "p99", "mean", "std", "n"}


def test_latency_stats_reject_empty_input():
    with pytest.raises(ValueError):
        LatencyStats.from_seconds([], 1)
    with pytest.raises(ValueError):
        percentile([], 50)


@given(
    st.floats(min_value=1e-7, max_value=5.0),
    st.integers(min_value=1, max_value=100),
    st.floats(min_value=0.0, max_value=10.0),
    st.integers(min_value=0, max_value=10_000),
)
def test_plan_rounds_respects_count_and_time_bounds(per_call, min_rounds, min_seconds, extra):
    max_rounds = min_rounds + extra
    rounds = plan_rounds(per_call, min_rounds, min_seconds, max_rounds)
    assert min_rounds <= rounds <= max_rounds
    if rounds < max_rounds:
        assert rounds * per_call >= min_seconds - 1e-9 or rounds == min_rounds


def test_time_calls_times_each_call_once():
    from ptqcore.measure.stats import time_calls

    calls = []
    samples = time_calls(lambda: calls.append(1), 7)
    assert len(samples) == len(calls) == 7 and all(s >= 0 for s in samples)

"""Overhead verdicts from interleaved windows: window medians, bracketed ratios, bootstrap interval.

Pure logic, property-tested; every bootstrap is seeded, so these tests are deterministic.
"""

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptqcore.measure.stats import bootstrap_median_ci, bracketed_ratios, judge_overhead, window_medians

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
ratios = st.lists(st.floats(min_value=0.5, max_value=2.0, allow_nan=False), min_size=1, max_size=40)


@given(st.lists(positive, min_size=1, max_size=100), st.integers(min_value=1, max_value=20))
def test_window_medians_cover_whole_windows_only(samples, window):
    medians = window_medians(samples, window)
    assert len(medians) == len(samples) // window
    for i, median in enumerate(medians):
        chunk = samples[i * window:(i + 1) * window]
        assert min(chunk) <= median <= max(chunk)


@given(st.lists(positive, min_size=1, max_size=30), positive)
def test_bracketed_ratios_against_a_steady_reference_are_plain_ratios(measured, level):
    ratios_ = bracketed_ratios(measured, [level] * (len(measured) + 1))
    assert ratios_ == pytest.approx([m / level for m in measured])


def test_bracketing_cancels_linear_drift():
    # the machine slows down linearly; the measured side is exactly 5% slower than the reference at its time
    reference = [1.0 + 0.1 * k for k in range(0, 21, 2)]  # at t = 0, 2, 4, ...
    measured = [1.05 * (1.0 + 0.1 * k) for k in range(1, 20, 2)]  # at t = 1, 3, 5, ...
    assert bracketed_ratios(measured, reference) == pytest.approx([1.05] * 10)


def test_bracketed_ratios_reject_mismatched_or_empty_windows():
    with pytest.raises(ValueError):
        bracketed_ratios([1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        bracketed_ratios([], [1.0])
    with pytest.raises(ValueError):
        bracketed_ratios([1.0], [0.0, 1.0])


@settings(max_examples=50, deadline=None)
@given(ratios, st.integers(min_value=0, max_value=2**31))
def test_bootstrap_interval_is_ordered_bounded_and_seeded(values, seed):
    median, low, high = bootstrap_median_ci(values, resamples=300, seed=seed)
    assert median == statistics.median(values)
    assert min(values) <= low <= high <= max(values)
    assert bootstrap_median_ci(values, resamples=300, seed=seed) == (median, low, high)


@settings(max_examples=50, deadline=None)
@given(ratios, st.floats(min_value=0.01, max_value=100.0))
def test_bootstrap_interval_scales_with_the_data(values, factor):
    _, low, high = bootstrap_median_ci(values, resamples=200, seed=7)
    _, scaled_low, scaled_high = bootstrap_median_ci([v * factor for v in values], resamples=200, seed=7)
    assert (scaled_low, scaled_high) == pytest.approx((low * factor, high * factor))


def test_bootstrap_of_identical_values_is_a_point():
    assert bootstrap_median_ci([1.02] * 12) == pytest.approx((1.02, 1.02, 1.02))


def test_bootstrap_rejects_bad_arguments():
    for args in (([],), ([1.0], 1.0), ([1.0], 0.95, 0)):
        with pytest.raises(ValueError):
            bootstrap_median_ci(*args)


@settings(max_examples=50, deadline=None)
@given(ratios, st.floats(min_value=0.005, max_value=0.2))
def test_the_verdict_follows_the_interval(values, limit):
    verdict = judge_overhead(values, limit, resamples=300)
    assert verdict.windows == len(values)
    if verdict.low > 1 + limit:
        assert verdict.outcome == "above"
    elif verdict.high - verdict.low > limit:
        assert verdict.outcome == "noisy"
    else:
        assert verdict.outcome == "within"
    record = verdict.as_dict()
    assert record["outcome"] == verdict.outcome
    assert (record["ratio"], record["low"], record["high"]) == (verdict.ratio, verdict.low, verdict.high)


def test_a_steady_overhead_above_the_limit_fails_and_one_below_passes():
    assert judge_overhead([1.10, 1.11, 1.09, 1.10, 1.10, 1.12, 1.08, 1.10], 0.03).outcome == "above"
    assert judge_overhead([1.00, 1.01, 0.99, 1.00, 1.00, 1.01, 0.99, 1.00], 0.03).outcome == "within"


def test_ratios_as_spread_as_a_busy_vm_are_too_noisy_to_tell():
    """The spread seen on a 2-core VM (0.70 to 1.03) cannot resolve a 3% overhead."""
    verdict = judge_overhead([0.70, 1.03, 0.85, 0.95, 0.78, 1.01, 0.90, 0.74, 0.99, 0.88], 0.03)
    assert verdict.outcome == "noisy"
    assert verdict.describe().startswith("ratio 0.8") and "95% CI [" in verdict.describe()


def test_judge_rejects_a_limit_that_is_not_positive():
    with pytest.raises(ValueError):
        judge_overhead([1.0], 0.0)

"""Energy arithmetic: integration over exact windows, counters with wrap-around, energy per inference."""

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ptqcore.measure.telemetry.energy import (
    counter_delta,
    counter_increment,
    energy_per_inference,
    interpolate,
    short_window_flag,
    time_average,
    trapezoid_energy,
)

gaps = st.lists(st.floats(min_value=1e-3, max_value=10.0), min_size=1, max_size=40)
fractions = st.floats(min_value=0.0, max_value=1.0)


def timeline(steps, origin=0.0):
    times = [origin]
    for step in steps:
        times.append(times[-1] + step)
    return times


def window(times, a, b):
    """A window [start, end] inside the readings, from two fractions of their span."""
    low, high = sorted((a, b))
    span = times[-1] - times[0]
    return times[0] + low * span, times[0] + high * span


@given(gaps, fractions, fractions, st.floats(min_value=0.0, max_value=1000.0))
def test_constant_power_times_time_is_the_energy_of_any_window(steps, a, b, watts):
    times = timeline(steps)
    start, end = window(times, a, b)
    energy = trapezoid_energy(times, [watts] * len(times), start, end)
    assert energy == pytest.approx(watts * (end - start), rel=1e-9, abs=1e-9)


@given(gaps, fractions, fractions, st.floats(min_value=-5.0, max_value=5.0), st.floats(min_value=0.0, max_value=100.0))
def test_a_linear_power_ramp_is_integrated_exactly_including_the_edges(steps, a, b, slope, offset):
    times = timeline(steps)
    start, end = window(times, a, b)
    watts = [offset + slope * t for t in times]
    exact = offset * (end - start) + slope * (end**2 - start**2) / 2
    assert trapezoid_energy(times, watts, start, end) == pytest.approx(exact, rel=1e-9, abs=1e-6)


@given(
    gaps, st.lists(st.floats(min_value=0.0, max_value=500.0), min_size=41, max_size=41), fractions, fractions, fractions
)
def test_energy_over_adjacent_windows_adds_up(steps, power, a, b, c):
    times = timeline(steps)
    watts = power[: len(times)]
    start, end = window(times, a, b)
    middle = start + c * (end - start)
    parts = trapezoid_energy(times, watts, start, middle) + trapezoid_energy(times, watts, middle, end)
    assert parts == pytest.approx(trapezoid_energy(times, watts, start, end), rel=1e-9, abs=1e-9)


@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=50), st.integers(min_value=0, max_value=10**12))
def test_a_monotone_counters_delta_is_the_sum_of_its_increments(increments, first):
    values = timeline(increments, origin=first)
    assert counter_delta(values) == sum(increments)


@given(
    st.integers(min_value=2, max_value=2**40),
    st.data(),
)
def test_a_counter_that_wraps_around_is_unwrapped(max_range, data):
    increments = data.draw(st.lists(st.integers(min_value=0, max_value=max_range - 1), max_size=50))
    first = data.draw(st.integers(min_value=0, max_value=max_range - 1))
    raw = [(first + sum(increments[:i])) % max_range for i in range(len(increments) + 1)]
    assert counter_delta(raw, max_range) == sum(increments)


def test_a_rapl_wrap_is_counted_once():
    # energy_uj just below max_energy_range_uj, then past zero: 1000 uJ + 500 uJ
    assert counter_increment(262_143_328_000, 500, max_range=262_143_329_000) == 1500


def test_a_counter_that_goes_back_without_a_range_is_a_reset_not_energy():
    with pytest.raises(ValueError, match="reset"):
        counter_delta([10.0, 20.0, 5.0])


@given(gaps, fractions)
def test_interpolation_returns_the_readings_at_their_own_times(steps, a):
    times = timeline(steps)
    values = [math.sin(t) for t in times]
    for t, v in zip(times, values):
        assert interpolate(times, values, t) == pytest.approx(v)
    assume(len(times) >= 2)
    inside = times[0] + a * (times[-1] - times[0])
    assert min(values) - 1e-9 <= interpolate(times, values, inside) <= max(values) + 1e-9


def test_edges_are_interpolated_inside_one_interval():
    # 10 W at t=0, 20 W at t=10: over [2.5, 7.5] the curve goes 12.5 -> 17.5 W, 75 J
    assert trapezoid_energy([0.0, 10.0], [10.0, 20.0], 2.5, 7.5) == pytest.approx(75.0)
    assert time_average([0.0, 10.0], [10.0, 20.0], 2.5, 7.5) == pytest.approx(15.0)


def test_readings_outside_the_window_shape_only_its_edges():
    # a spike well before the window does not count
    assert trapezoid_energy([0.0, 1.0, 2.0, 3.0], [1000.0, 5.0, 5.0, 5.0], 1.0, 3.0) == pytest.approx(10.0)


@pytest.mark.parametrize("start, end", [(-1.0, 1.0), (0.5, 3.5), (2.0, 1.0)])
def test_a_window_the_readings_do_not_cover_is_an_error_not_an_extrapolation(start, end):
    with pytest.raises(ValueError):
        trapezoid_energy([0.0, 1.0, 2.0, 3.0], [5.0] * 4, start, end)


def test_timestamps_that_go_back_are_refused():
    with pytest.raises(ValueError, match="decrease"):
        trapezoid_energy([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], 0.0, 1.0)


def test_energy_per_inference_subtracts_the_idle_baseline_and_reports_it():
    result = energy_per_inference(window_energy_j=30.0, idle_power_w=5.0, window_s=2.0, inferences=100)
    assert result.net_j == pytest.approx(0.2)  # (30 J - 5 W x 2 s) / 100
    assert result.gross_j == pytest.approx(0.3)
    assert result.idle_energy_j == pytest.approx(10.0)
    assert result.idle_power_w == 5.0 and not result.below_idle
    assert set(result.as_dict()) >= {"net_j", "gross_j", "idle_power_w", "idle_energy_j", "window_s", "inferences"}


def test_without_a_baseline_there_is_no_net_figure():
    result = energy_per_inference(30.0, None, 2.0, 100)
    assert result.net_j is None and result.idle_energy_j is None
    assert result.gross_j == pytest.approx(0.3)


def test_a_window_below_idle_keeps_its_negative_net_and_is_flagged():
    result = energy_per_inference(9.0, 5.0, 2.0, 10)
    assert result.net_j == pytest.approx(-0.1)
    assert result.below_idle


def test_energy_per_inference_needs_an_inference():
    with pytest.raises(ValueError):
        energy_per_inference(1.0, 0.5, 1.0, 0)


def test_windows_shorter_than_ten_intervals_are_flagged():
    assert short_window_flag(1.0, 0.2) is not None
    assert "10 sampling intervals" in short_window_flag(1.9, 0.2)
    assert short_window_flag(2.0, 0.2) is None
    assert short_window_flag(5.0, 0.2, factor=30) is not None

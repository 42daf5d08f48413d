"""Energy arithmetic on timestamped readings: pure functions, no I/O, no clocks.

Conventions: timestamps are seconds on one monotonic clock (``time.perf_counter``), power is in
watts, energy in joules. Every integral is over exactly ``[start, end]``: a reading that falls
outside the window is used only to interpolate the value at its edge, and a window that the
readings do not cover is an error, never an extrapolation.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

#: A window shorter than this many sampling intervals holds too few readings for a mean or an energy.
MIN_INTERVALS_PER_WINDOW = 10.0


def _check_series(timestamps: Sequence[float], values: Sequence[float]) -> None:
    if len(timestamps) != len(values):
        raise ValueError(f"{len(timestamps)} timestamps but {len(values)} values")
    if not timestamps:
        raise ValueError("no readings")
    if any(later < earlier for earlier, later in zip(timestamps, timestamps[1:])):
        raise ValueError("timestamps must not decrease")


def interpolate(timestamps: Sequence[float], values: Sequence[float], t: float) -> float:
    """The value at ``t`` by linear interpolation between the readings around it.

    ``t`` must lie within ``[timestamps[0], timestamps[-1]]`` (ValueError otherwise).
    """
    _check_series(timestamps, values)
    if not timestamps[0] <= t <= timestamps[-1]:
        raise ValueError(f"t={t} lies outside the readings [{timestamps[0]}, {timestamps[-1]}]")
    i = bisect.bisect_left(timestamps, t)
    if timestamps[i] == t:
        return float(values[i])
    t0, t1 = timestamps[i - 1], timestamps[i]
    v0, v1 = values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def trapezoid_integral(timestamps: Sequence[float], values: Sequence[float], start: float, end: float) -> float:
    """Integral of the piecewise-linear curve through the readings over exactly ``[start, end]``.

    The curve is interpolated at ``start`` and ``end``, so readings just outside the window shape
    the edges only. ValueError when ``end < start`` or the readings do not cover the window.
    """
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    _check_series(timestamps, values)
    if start < timestamps[0] or end > timestamps[-1]:
        raise ValueError(f"readings cover [{timestamps[0]}, {timestamps[-1]}], not the window [{start}, {end}]")
    inner = [(t, float(v)) for t, v in zip(timestamps, values) if start < t < end]
    points = [(start, interpolate(timestamps, values, start))] + inner + [(end, interpolate(timestamps, values, end))]
    return math.fsum((t1 - t0) * (v0 + v1) / 2.0 for (t0, v0), (t1, v1) in zip(points, points[1:]))


def trapezoid_energy(timestamps: Sequence[float], watts: Sequence[float], start: float, end: float) -> float:
    """Joules over exactly ``[start, end]`` from instantaneous power readings (trapezoid rule)."""
    return trapezoid_integral(timestamps, watts, start, end)


def time_average(timestamps: Sequence[float], values: Sequence[float], start: float, end: float) -> float:
    """Time-weighted mean over ``[start, end]``; for an empty window, the value at ``start``."""
    if end == start:
        return interpolate(timestamps, values, start)
    return trapezoid_integral(timestamps, values, start, end) / (end - start)


def counter_increment(previous: float, current: float, max_range: Optional[float] = None) -> float:
    """How much a monotone counter grew from ``previous`` to ``current``.

    A counter that reads less than before has wrapped around: it counts modulo ``max_range``
    (Linux powercap's ``max_energy_range_uj``), so the growth is ``max_range - previous + current``.
    This assumes at most one wrap between the two readings. Without ``max_range`` a decrease is
    a reset, not a wrap: ValueError.
    """
    if current >= previous:
        return current - previous
    if max_range is None:
        raise ValueError(f"counter went back from {previous} to {current} and has no max_range: it was reset")
    if not previous <= max_range:
        raise ValueError(f"counter reading {previous} exceeds its max_range {max_range}")
    return max_range - previous + current


def counter_delta(values: Sequence[float], max_range: Optional[float] = None) -> float:
    """Total growth of a monotone counter over consecutive readings, unwrapping wrap-arounds."""
    return math.fsum(counter_increment(a, b, max_range) for a, b in zip(values, values[1:]))


def short_window_flag(window_s: float, interval_s: float, factor: float = MIN_INTERVALS_PER_WINDOW) -> Optional[str]:
    """A message when ``window_s`` is shorter than ``factor`` sampling intervals, else None.

    Such a window holds too few readings for its mean power or energy to mean much: lengthen it
    (more timed rounds) or sample faster, or report the figure with this flag.
    """
    if interval_s > 0 and window_s < factor * interval_s:
        return (
            f"window of {window_s:.3f} s is shorter than {factor:g} sampling intervals "
            f"({factor * interval_s:.3f} s at {interval_s:g} s): its power and energy are rough"
        )
    return None


@dataclass(frozen=True)
class EnergyPerInference:
    """Energy of one inference: the window's energy less the idle baseline, shared by the inferences.

    ``net_j = (window_energy_j - idle_power_w * window_s) / inferences``; ``gross_j`` is the same
    without the baseline. ``net_j`` is None without a baseline; a negative ``net_j`` (the window
    drew less than idle, i.e. noise) is kept as it is and flagged by ``below_idle``.
    """

    net_j: Optional[float]
    gross_j: float
    window_energy_j: float
    window_s: float
    idle_power_w: Optional[float]
    idle_energy_j: Optional[float]
    inferences: int
    below_idle: bool

    def as_dict(self) -> dict:
        return asdict(self)


def energy_per_inference(
    window_energy_j: float, idle_power_w: Optional[float], window_s: float, inferences: int
) -> EnergyPerInference:
    """Energy per inference over a timed window, net of the idle baseline (see :class:`EnergyPerInference`).

    ``idle_power_w`` is the mean power measured with the machine idle before the window (None
    when there is none); it is reported beside the result, never folded into it silently.
    """
    if inferences < 1:
        raise ValueError(f"inferences must be >= 1, got {inferences}")
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    idle_energy = None if idle_power_w is None else idle_power_w * window_s
    net = None if idle_energy is None else (window_energy_j - idle_energy) / inferences
    return EnergyPerInference(
        net_j=net,
        gross_j=window_energy_j / inferences,
        window_energy_j=window_energy_j,
        window_s=window_s,
        idle_power_w=idle_power_w,
        idle_energy_j=idle_energy,
        inferences=inferences,
        below_idle=net is not None and net < 0,
    )

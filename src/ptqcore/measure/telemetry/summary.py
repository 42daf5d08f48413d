"""What one window of a :class:`~ptqcore.measure.telemetry.monitor.ResourceMonitor` measured: :class:`PhaseSummary`.

:func:`summarize` is pure: it turns timestamped samples into the summary of ``[start, end]``.

Rules:

* Each figure comes from the first source, in the monitor's sampler order, that reported its
  reading inside the window (``sources`` says which).
* CPU percentages are averages over the time since the source's previous reading, so their mean
  weighs each reading by that time, clipped to the window, and a reading taken at ``start``
  (which describes the time before it) is not used. Every other reading is an instantaneous
  gauge: its mean is the time average of the piecewise-linear curve through its readings over
  exactly the window (the plain mean where the readings do not cover the window).
* Energy is counted per power domain (the first source of each domain, see
  :class:`~ptqcore.measure.telemetry.samplers.Sampler`): the growth of its ``energy_j`` counter over the
  window, interpolated at the edges, where it has one; else the trapezoid integral of its
  ``power_w`` over exactly the window. ``energy_j`` and ``power_w_mean`` add the domains up
  (``energy_domains`` lists them: on a desktop that is GPU and CPU packages, not the machine).
* A figure no source measured is None and named in ``unavailable`` with the reason; never 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ptqcore.measure.telemetry.energy import interpolate, short_window_flag, time_average, trapezoid_energy
from ptqcore.measure.telemetry.machine_state import stability_flags
from ptqcore.measure.telemetry.samplers.base import Readings

#: Readings that average the time since the previous reading rather than describing an instant.
INTERVAL_AVERAGED = ("cpu_percent_process", "cpu_percent_system")
#: summary field -> (reading, statistic)
FIGURES = {
    "cpu_percent_process_mean": ("cpu_percent_process", "mean"),
    "cpu_percent_process_peak": ("cpu_percent_process", "peak"),
    "cpu_percent_system_mean": ("cpu_percent_system", "mean"),
    "cpu_percent_system_peak": ("cpu_percent_system", "peak"),
    "rss_bytes_peak": ("rss_bytes", "peak"),
    "memory_used_bytes_peak": ("memory_used_bytes", "peak"),
    "gpu_load_percent_mean": ("gpu_load_percent", "mean"),
    "gpu_load_percent_peak": ("gpu_load_percent", "peak"),
    "gpu_memory_used_bytes_peak": ("gpu_memory_used_bytes", "peak"),
}
CLOCKS = ("cpu_mhz", "gpu_mhz", "emc_mhz")


@dataclass(frozen=True)
class Sample:
    """The readings of every active source at one instant ``t`` (``time.perf_counter`` seconds)."""

    t: float
    readings: Dict[str, Readings]

    def as_dict(self, origin: float = 0.0) -> dict:
        return {"t_s": self.t - origin, "readings": {name: dict(values) for name, values in self.readings.items()}}


@dataclass(frozen=True)
class SourceInfo:
    """A source as the summary needs it: its name, power domain and notes."""

    name: str
    power_domain: Optional[str] = None
    notes: Dict[str, str] = field(default_factory=dict)


@dataclass
class PhaseSummary:
    """Resources used during one window; see the module docstring for how each figure is made."""

    name: str
    start_s: float  # from the monitor's start
    duration_s: float
    sample_count: int
    interval_s: float  # the monitor's sampling interval
    mean_interval_s: Optional[float]  # observed, between consecutive samples in the window
    cpu_percent_process_mean: Optional[float] = None
    cpu_percent_process_peak: Optional[float] = None
    cpu_percent_system_mean: Optional[float] = None
    cpu_percent_system_peak: Optional[float] = None
    rss_bytes_peak: Optional[float] = None
    memory_used_bytes_peak: Optional[float] = None
    gpu_load_percent_mean: Optional[float] = None
    gpu_load_percent_peak: Optional[float] = None
    gpu_memory_used_bytes_peak: Optional[float] = None
    power_w_mean: Optional[float] = None
    energy_j: Optional[float] = None
    energy_domains: Dict[str, dict] = field(default_factory=dict)
    rails_w_mean: Dict[str, float] = field(default_factory=dict)
    clocks_mhz: Dict[str, dict] = field(default_factory=dict)
    temperature_c_peak: Dict[str, float] = field(default_factory=dict)
    stability: dict = field(default_factory=dict)
    flags: List[str] = field(default_factory=list)
    sources: Dict[str, str] = field(default_factory=dict)
    unavailable: Dict[str, str] = field(default_factory=dict)
    samples: Optional[List[dict]] = None

    def as_dict(self) -> dict:
        """Everything, JSON-ready (numbers, strings, None, lists and dicts only)."""
        return asdict(self)


def _series(samples: Sequence[Sample], source: str, key: str) -> Tuple[List[float], List[float]]:
    pairs = [(s.t, s.readings[source][key]) for s in samples if key in s.readings.get(source, {})]
    return [t for t, _ in pairs], [v for _, v in pairs]


def _covers(ts: Sequence[float], start: float, end: float) -> bool:
    return bool(ts) and ts[0] <= start and ts[-1] >= end


def _interval_stats(
    ts: Sequence[float], vs: Sequence[float], start: float, end: float
) -> Optional[Tuple[float, float]]:
    """(mean weighted by the time each reading covers inside the window, peak) of readings in (start, end]."""
    weighted, total, peak = 0.0, 0.0, None
    for i, (t, v) in enumerate(zip(ts, vs)):
        if not start < t <= end:
            continue
        covered = t - max(ts[i - 1] if i else start, start)
        weighted, total = weighted + v * covered, total + covered
        peak = v if peak is None else max(peak, v)
    if peak is None:
        return None
    return (weighted / total if total > 0 else peak), peak


def _gauge_stats(ts: Sequence[float], vs: Sequence[float], start: float, end: float) -> Optional[Tuple[float, float]]:
    """(time-average over exactly the window, peak of readings in [start, end])."""
    inside = [v for t, v in zip(ts, vs) if start <= t <= end]
    if not inside:
        return None
    mean = time_average(ts, vs, start, end) if _covers(ts, start, end) else math.fsum(inside) / len(inside)
    return mean, max(inside)


def _stats(samples, source, key, start, end):
    ts, vs = _series(samples, source, key)
    return (_interval_stats if key in INTERVAL_AVERAGED else _gauge_stats)(ts, vs, start, end)


def _first_source(samples: Sequence[Sample], order: Sequence[str], key: str, start: float, end: float) -> Optional[str]:
    for name in order:
        if any(start <= s.t <= end and key in s.readings.get(name, {}) for s in samples):
            return name
    return None


def _domain_energy(samples, source: SourceInfo, start: float, end: float) -> Optional[dict]:
    """Energy of one power source over the window, by counter or by trapezoid; None if it has neither."""
    ts, counter = _series(samples, source.name, "energy_j")
    if len(ts) >= 2 and _covers(ts, start, end):
        joules = interpolate(ts, counter, end) - interpolate(ts, counter, start)
        method = "counter"
    else:
        ts, watts = _series(samples, source.name, "power_w")
        if not _covers(ts, start, end):
            return None
        joules, method = trapezoid_energy(ts, watts, start, end), "trapezoid"
    duration = end - start
    mean_w = joules / duration if duration > 0 else None
    return {
        "source": source.name,
        "method": method,
        "energy_j": joules,
        "power_w_mean": mean_w,
        "note": source.notes.get("power_w") or source.notes.get("energy_j"),
    }


def summarize(
    name: str,
    start: float,
    end: float,
    samples: Sequence[Sample],
    sources: Sequence[SourceInfo],
    interval_s: float,
    unavailable: Dict[str, str],
    origin: float,
    keep_samples: bool = False,
) -> PhaseSummary:
    """The :class:`PhaseSummary` of ``[start, end]`` from ``samples`` (all of the run, in time order)."""
    inside = [s for s in samples if start <= s.t <= end]
    gaps = [b.t - a.t for a, b in zip(inside, inside[1:])]
    summary = PhaseSummary(
        name=name,
        start_s=start - origin,
        duration_s=end - start,
        sample_count=len(inside),
        interval_s=interval_s,
        mean_interval_s=math.fsum(gaps) / len(gaps) if gaps else None,
        unavailable=dict(unavailable),
    )
    order = [source.name for source in sources]
    for figure, (key, statistic) in FIGURES.items():
        source = _first_source(samples, order, key, start, end)
        if source is None:
            summary.unavailable.setdefault(key, "no source reported it")
            continue
        stats = _stats(samples, source, key, start, end)
        if stats is None:  # its only reading opened the window and describes the time before it
            summary.unavailable.setdefault(key, "no reading inside the window (too short)")
            continue
        summary.sources[key] = source
        setattr(summary, figure, stats[0] if statistic == "mean" else stats[1])
    _energy(summary, samples, sources, start, end)
    _per_key(summary, samples, order, start, end)
    summary.stability = stability_flags(inside)
    flag = short_window_flag(end - start, interval_s)
    if flag:
        summary.flags.append(flag)
    if summary.stability.get("throttling"):
        summary.flags.append(
            "clock drop above {:.0%} in the window: throttling or unpinned clocks".format(
                summary.stability["max_clock_drop"]
            )
        )
    if keep_samples:
        summary.samples = [s.as_dict(origin) for s in inside]
    return summary


def _energy(summary: PhaseSummary, samples, sources: Sequence[SourceInfo], start: float, end: float) -> None:
    for source in sources:
        domain = source.power_domain
        if domain is None or domain in summary.energy_domains:
            continue
        result = _domain_energy(samples, source, start, end)
        if result is None:
            summary.unavailable.setdefault(f"{source.name}.energy_j", "its readings do not cover the window")
            continue
        summary.energy_domains[domain] = result
    measured = list(summary.energy_domains.values())
    if not measured:
        summary.unavailable.setdefault("energy_j", "no power source measured this window")
        return
    summary.energy_j = math.fsum(d["energy_j"] for d in measured)
    means = [d["power_w_mean"] for d in measured]
    summary.power_w_mean = math.fsum(means) if all(m is not None for m in means) else None


def _per_key(summary: PhaseSummary, samples, order: Sequence[str], start: float, end: float) -> None:
    """Clocks (min, max, mean), peak temperatures and mean rail powers, each from its first source."""
    keys = sorted({key for s in samples if start <= s.t <= end for values in s.readings.values() for key in values})
    for key in keys:
        source = _first_source(samples, order, key, start, end)
        ts, vs = _series(samples, source, key)
        inside = [v for t, v in zip(ts, vs) if start <= t <= end]
        mean, peak = _gauge_stats(ts, vs, start, end)
        if key in CLOCKS:
            summary.clocks_mhz[key] = {"min": min(inside), "max": peak, "mean": mean, "source": source}
        elif key.startswith("temp_c_"):
            summary.temperature_c_peak[key[len("temp_c_") :]] = peak
        elif key.startswith("power_w_"):
            summary.rails_w_mean[key[len("power_w_") :]] = mean

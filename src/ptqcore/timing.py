"""Timed measurements through pytest-benchmark, following the timing rules in DESIGN.md section 5.

Warm-up is run and discarded first (its first call reported on its own), then the number of
timed rounds is planned so that it reaches both a minimum count and a minimum duration, and
pytest-benchmark times each round. Percentiles come from pytest-benchmark's raw samples.

With a :class:`~ptqcore.telemetry.ResourceMonitor`, the timed rounds are also its ``inference``
window; where a power source exists, the window is lengthened to at least 10 sampling intervals,
an ``idle`` window as long is measured just before it (after warm-up, the runner idle), and energy
per inference is the window's energy less that idle baseline, divided by the images processed.
Without power, short windows are only flagged in the summary (CPU and memory need no length).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from .stats import LatencyStats, plan_rounds, warm_up


@dataclass(frozen=True)
class LatencyPlan:
    min_rounds: int = 20
    min_seconds: float = 1.0
    max_rounds: int = 100_000
    warmup_calls: int = 10
    warmup_seconds: float = 0.5


@dataclass
class LatencyRun:
    """What one latency measurement produced; telemetry fields are None without a monitor."""

    stats: Optional[LatencyStats]
    first_ms: float
    rounds: int
    resources: dict = field(default_factory=dict)
    energy: Optional[dict] = None
    stability: Optional[dict] = None
    machine_state: Optional[dict] = None


def reference_half_rounds(call: Callable[[], object], plan: LatencyPlan) -> int:
    """Warm ``call`` up and size each half of a reference measurement taken around a timed window.

    Overhead checks time a reference before and after the measured window with this many calls
    each, so that drift of the machine weighs on both sides alike: half of what ``plan`` would
    time, and at least its minimum rounds.
    """
    _, per_call = warm_up(call, plan.warmup_calls, plan.warmup_seconds)
    return max(plan.min_rounds, plan_rounds(per_call, plan.min_rounds, plan.min_seconds, plan.max_rounds) // 2)


def raw_samples(benchmark) -> Optional[List[float]]:
    """The per-round seconds pytest-benchmark recorded, or None when benchmarking is disabled."""
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    data = getattr(inner, "data", None)
    return list(data) if data else None


def measures_power(monitor) -> bool:
    """True when any source of a started monitor reports power or an energy counter."""
    return any(
        key in ("power_w", "energy_j") for sample in monitor.samples() for readings in sample.readings.values()
        for key in readings
    )


def benchmark_latency(
    benchmark, infer: Callable[[np.ndarray], object], batch: np.ndarray, plan: LatencyPlan, monitor=None
) -> LatencyRun:
    """Warm up, then time ``infer(batch)`` with ``benchmark.pedantic`` (inside ``monitor``'s window).

    ``stats`` is None when pytest-benchmark was told not to time (``--benchmark-disable``): the
    calls still ran, but nothing was measured.
    """
    from .telemetry import energy_per_inference, machine_state, stability_flags

    first_s, per_call_s = warm_up(lambda: infer(batch), plan.warmup_calls, plan.warmup_seconds)
    with monitor if monitor is not None else contextlib.nullcontext():
        idle, min_seconds = None, plan.min_seconds
        if monitor is not None and measures_power(monitor):
            # energy needs a window of at least 10 sampling intervals: lengthen it, never shorten
            min_seconds = max(min_seconds, 10 * monitor.interval_s)
            idle = monitor.idle_baseline(max(2.0, 10 * monitor.interval_s))
        rounds = plan_rounds(per_call_s, plan.min_rounds, min_seconds, plan.max_rounds)
        state = machine_state() if monitor is not None else None
        window = monitor.phase("inference") if monitor is not None else contextlib.nullcontext()
        with window as phase:
            benchmark.pedantic(infer, args=(batch,), rounds=rounds, iterations=1, warmup_rounds=0)
    samples = raw_samples(benchmark)
    run = LatencyRun(LatencyStats.from_seconds(samples, len(batch)) if samples else None, first_s * 1000.0, rounds)
    if monitor is not None:
        inference = phase.summary()
        run.resources = {"inference": inference.as_dict()}
        if idle is not None:
            run.resources["idle"] = idle.as_dict()
        if inference.energy_j is not None:
            run.energy = energy_per_inference(
                inference.energy_j, idle.power_w_mean if idle else None, inference.duration_s, rounds * len(batch)
            ).as_dict()
        run.machine_state = state
        run.stability = stability_flags(monitor.samples(phase.start, phase.end), latencies_s=samples)
    return run

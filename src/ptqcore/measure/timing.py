"""Timed measurements through pytest-benchmark, by the timing rules below.

Warm-up is run and discarded first (its first call reported on its own), then the number of
timed rounds is planned so that it reaches both a minimum count and a minimum duration, and
pytest-benchmark times each round. Percentiles come from pytest-benchmark's raw samples.

With a :class:`~ptqcore.measure.telemetry.ResourceMonitor`, the timed rounds are also its ``inference``
window; where a power source exists, the window is lengthened to at least 10 sampling intervals,
an ``idle`` window as long is measured just before it (after warm-up, the runner idle), and energy
per inference is the window's energy less that idle baseline, divided by the images processed.
Without power, short windows are only flagged in the summary (CPU and memory need no length).

Before each latency window :func:`machine_load` samples how busy the machine is (``LatencyRun.load``),
so that a slow figure measured next to other work says so (see :func:`machine_load` for the rule).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from ptqcore.measure.stats import (
    LatencyStats,
    OverheadVerdict,
    bracketed_ratios,
    judge_overhead,
    plan_rounds,
    time_calls,
    warm_up,
    window_medians,
)


@dataclass(frozen=True)
class LatencyPlan:
    min_rounds: int = 20
    min_seconds: float = 1.0
    max_rounds: int = 100_000
    warmup_calls: int = 10
    warmup_seconds: float = 0.5
    load_sample_seconds: float = 0.2


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
    load: Optional[dict] = None


#: other processes using more than this share of one core (in %) during the sample: the machine is busy
BUSY_OTHER_CPU_PCT = 25.0


def machine_load(sample_s: float = 0.2) -> dict:
    """How busy the machine is right now, from a ``sample_s``-second sample (the caller sleeps that long).

    Returns ``loadavg_1m`` / ``loadavg_5m`` / ``loadavg_15m`` (``os.getloadavg()``, None where the
    platform has none), ``cpu_count``, and over the sample, in % of one core (100 = one core busy):
    ``machine_cpu_pct`` (all processes), ``process_cpu_pct`` (this one) and ``other_cpu_pct`` (their
    difference, >= 0); ``sample_s``; ``busy`` and ``busy_rule``.

    Rule: ``busy`` is True when other processes used more than :data:`BUSY_OTHER_CPU_PCT` % of one
    core during the sample. The load average is recorded for context but not judged: it counts this
    process's own threads (ONNX Runtime, PyTorch) and lags by a minute, so on a 2-core machine the
    benchmark alone would read as busy. ``busy`` is None when CPU times cannot be read.
    """
    import psutil

    try:
        load = os.getloadavg()
    except (AttributeError, OSError):  # Windows has no load average
        load = (None, None, None)
    out = {"loadavg_1m": load[0], "loadavg_5m": load[1], "loadavg_15m": load[2], "cpu_count": os.cpu_count(),
           "machine_cpu_pct": None, "process_cpu_pct": None, "other_cpu_pct": None, "sample_s": sample_s,
           "busy": None, "busy_rule": f"other processes > {BUSY_OTHER_CPU_PCT:g}% of one core"}
    try:
        busy_before, total_before = _machine_cpu_s(psutil)
        process_before = _process_cpu_s()
        time.sleep(sample_s)
        busy_after, total_after = _machine_cpu_s(psutil)
        process_after = _process_cpu_s()
    except (OSError, psutil.Error):
        return out
    # the kernel's own clock of the sample: all CPUs' seconds over the number of CPUs
    elapsed = (total_after - total_before) / (psutil.cpu_count() or 1)
    if elapsed <= 0:
        return out
    machine = 100.0 * max(0.0, busy_after - busy_before) / elapsed
    process = 100.0 * max(0.0, process_after - process_before) / elapsed
    other = max(0.0, machine - process)
    out.update(machine_cpu_pct=machine, process_cpu_pct=process, other_cpu_pct=other, busy=other > BUSY_OTHER_CPU_PCT)
    return out


def _machine_cpu_s(psutil) -> Tuple[float, float]:
    """(busy, total) CPU seconds since boot summed over CPUs; busy excludes idle, I/O wait and steal.

    Linux counts guest time inside user time as well, so guest fields are left out of both.
    """
    times = psutil.cpu_times()._asdict()
    for doubled in ("guest", "guest_nice"):
        times.pop(doubled, None)
    total = sum(times.values())
    return total - sum(times.get(name, 0.0) for name in ("idle", "iowait", "steal")), total


def _process_cpu_s() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    times = os.times()
    return times.user + times.system


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
    benchmark,
    infer: Callable[[np.ndarray], object],
    batch: np.ndarray,
    plan: LatencyPlan,
    monitor=None,
    between_rounds: Optional[Callable[[int], None]] = None,
) -> LatencyRun:
    """Sample the machine's load, warm up, then time ``infer(batch)`` with ``benchmark.pedantic``.

    The timed rounds run inside ``monitor``'s ``inference`` window when a monitor is given.
    ``between_rounds(i)``, when given, is called untimed before round ``i`` (pytest-benchmark's
    ``setup``): overhead checks interleave their reference windows with the timed rounds this way.
    ``stats`` is None when pytest-benchmark was told not to time (``--benchmark-disable``): the
    calls still ran, but nothing was measured. ``load`` is :func:`machine_load` before warm-up
    (None when ``plan.load_sample_seconds`` is 0).
    """
    from ptqcore.measure.telemetry import energy_per_inference, machine_state, stability_flags

    load = machine_load(plan.load_sample_seconds) if plan.load_sample_seconds > 0 else None
    rounds_done = itertools.count()
    hook = {} if between_rounds is None else {"setup": lambda: between_rounds(next(rounds_done))}

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
            benchmark.pedantic(infer, args=(batch,), rounds=rounds, iterations=1, warmup_rounds=0, **hook)
    samples = raw_samples(benchmark)
    run = LatencyRun(LatencyStats.from_seconds(samples, len(batch)) if samples else None, first_s * 1000.0, rounds,
                     load=load)
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


@dataclass
class OverheadRun:
    """An interleaved overhead measurement: the measured side's :class:`LatencyRun`, the verdict, the windows."""

    run: LatencyRun
    verdict: Optional[OverheadVerdict]
    window_calls: int
    measured_ms: List[float]
    reference_ms: List[float]

    def extra_info(self) -> dict:
        """What a benchmark records: ratio, its interval and outcome, window medians (ms), load."""
        verdict = self.verdict
        return {
            "overhead_ratio": verdict.ratio if verdict else None,
            "overhead_ci95": [verdict.low, verdict.high] if verdict else None,
            "overhead": verdict.as_dict() if verdict else None,
            "window_calls": self.window_calls,
            "measured_window_p50_ms": self.measured_ms,
            "reference_window_p50_ms": self.reference_ms,
            "load": self.run.load,
        }


def measure_overhead(
    benchmark,
    infer: Callable[[np.ndarray], object],
    batch: np.ndarray,
    plan: LatencyPlan,
    reference: Callable[[], object],
    limit: float,
    windows: int = 24,
    min_window_seconds: float = 0.05,
    min_window_calls: int = 5,
    measured_context: Optional[Callable[[], object]] = None,
) -> OverheadRun:
    """Time ``infer(batch)`` through :func:`benchmark_latency` in ``windows`` windows interleaved with ``reference()``.

    Order: reference, measured, reference, ..., measured, reference (each window the same number of
    calls, lasting at least ``min_window_seconds`` and together about ``plan.min_seconds``). The
    reference windows run untimed by pytest-benchmark, between its rounds; ``measured_context()``
    (e.g. a new ResourceMonitor), when given, is entered for each measured window only. Each measured
    window's median over its bracketing reference medians is one ratio; :func:`~ptqcore.measure.stats.judge_overhead`
    gives the verdict against ``limit``. ``verdict`` is None when benchmarking is disabled.
    """
    _, per_call = warm_up(reference, plan.warmup_calls, plan.warmup_seconds)
    window = plan_rounds(per_call, min_window_calls, max(min_window_seconds, plan.min_seconds / windows),
                         max(min_window_calls, plan.max_rounds // windows))
    rounds = window * windows
    timed = LatencyPlan(rounds, 0.0, rounds, plan.warmup_calls, plan.warmup_seconds, plan.load_sample_seconds)
    reference_windows: List[List[float]] = []
    open_context: List[contextlib.ExitStack] = []

    def close_context() -> None:
        while open_context:
            open_context.pop().close()

    def between_rounds(i: int) -> None:
        if i % window:
            return
        close_context()
        reference_windows.append(time_calls(reference, window))
        if measured_context is not None:
            stack = contextlib.ExitStack()
            open_context.append(stack)
            stack.enter_context(measured_context())

    try:
        run = benchmark_latency(benchmark, infer, batch, timed, between_rounds=between_rounds)
    finally:
        close_context()
    reference_windows.append(time_calls(reference, window))  # brackets the last measured window
    samples = raw_samples(benchmark)
    reference_ms = [1000.0 * window_medians(w, window)[0] for w in reference_windows]
    if not samples or len(samples) != rounds:
        return OverheadRun(run, None, window, [], reference_ms)
    measured_ms = [1000.0 * m for m in window_medians(samples, window)]
    verdict = judge_overhead(bracketed_ratios(measured_ms, reference_ms), limit)
    return OverheadRun(run, verdict, window, measured_ms, reference_ms)

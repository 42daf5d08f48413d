"""``ptqcore.measure.timing``: the machine-load sample taken before each latency window, and interleaved overhead runs.

pytest-benchmark is replaced by a stand-in with the same ``pedantic`` contract (``setup`` called
untimed before each round, raw seconds kept in ``stats.stats.data``), so this checks ptqcore's
own logic deterministically and without a model.
"""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from ptqcore.measure import timing
from ptqcore.measure.timing import LatencyPlan, benchmark_latency, machine_load, measure_overhead


class FakeBenchmark:
    """What ptqcore uses of pytest-benchmark's fixture: ``pedantic`` and the raw samples it leaves."""

    def __init__(self):
        self.calls = []
        self.stats = None

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        data = []
        for _ in range(rounds):
            if setup is not None:
                assert setup() is None  # ptqcore's hook never replaces the arguments
            started = time.perf_counter()
            target(*args)
            data.append(time.perf_counter() - started)
            self.calls.append("round")
        self.stats = SimpleNamespace(stats=SimpleNamespace(data=data))


def cpu_clock(values):
    """A stand-in CPU-time reader returning ``values`` one call after the other."""
    values = iter(values)
    return lambda *args: next(values)


@pytest.mark.parametrize("others_s, expected_busy", [(0.0, False), (0.04, False), (0.06, True), (0.3, True)])
def test_busy_means_other_processes_used_more_than_a_quarter_core(monkeypatch, others_s, expected_busy):
    # machine: 2 cores, 0.2 s sample -> 0.4 CPU-seconds in all; this process used 0.1 s of it
    monkeypatch.setattr(timing, "_machine_cpu_s", cpu_clock([(10.0, 100.0), (10.1 + others_s, 100.4)]))
    monkeypatch.setattr(timing, "_process_cpu_s", cpu_clock([5.0, 5.1]))
    monkeypatch.setattr(timing.time, "sleep", lambda s: None)
    monkeypatch.setattr("psutil.cpu_count", lambda *a, **k: 2)
    load = machine_load(0.2)
    assert load["busy"] is expected_busy
    assert load["other_cpu_pct"] == pytest.approx(100.0 * 2 * others_s / 0.4, abs=1e-6)
    assert set(load) >= {"loadavg_1m", "loadavg_5m", "loadavg_15m", "cpu_count", "machine_cpu_pct",
                         "process_cpu_pct", "sample_s", "busy_rule"}


def test_the_real_sample_reads_this_machine():
    load = machine_load(0.05)
    assert load["cpu_count"] >= 1 and load["busy"] in (True, False)
    assert 0 <= load["other_cpu_pct"] <= 100.0 * load["cpu_count"] + 1e-6
    if hasattr(__import__("os"), "getloadavg"):
        assert load["loadavg_1m"] >= 0


def test_benchmark_latency_records_the_load_and_calls_the_hook_before_each_round():
    bench, seen = FakeBenchmark(), []
    plan = LatencyPlan(min_rounds=7, min_seconds=0.0, max_rounds=7, warmup_calls=1, warmup_seconds=0.0,
                       load_sample_seconds=0.01)
    run = benchmark_latency(bench, lambda batch: batch.sum(), np.ones((1, 3)), plan,
                            between_rounds=lambda i: seen.append((i, len(bench.calls))))
    assert seen == [(i, i) for i in range(7)]  # before round i, i rounds had run
    assert run.rounds == 7 and run.stats.n == 7
    assert run.load is not None and run.load["sample_s"] == 0.01


def test_no_load_sample_when_the_plan_asks_for_none():
    plan = LatencyPlan(min_rounds=2, min_seconds=0.0, max_rounds=2, warmup_calls=1, warmup_seconds=0.0,
                       load_sample_seconds=0.0)
    assert benchmark_latency(FakeBenchmark(), lambda batch: None, np.ones(1), plan).load is None


def test_measure_overhead_interleaves_reference_and_measured_windows():
    events = []

    class Context:
        def __enter__(self):
            events.append("enter")

        def __exit__(self, *exc):
            events.append("exit")

    plan = LatencyPlan(min_rounds=1, min_seconds=0.0, max_rounds=1000, warmup_calls=2, warmup_seconds=0.0,
                       load_sample_seconds=0.0)
    measured = measure_overhead(FakeBenchmark(), lambda batch: events.append("m"), np.ones(1), plan,
                                lambda: events.append("r"), limit=0.03, windows=4, min_window_seconds=0.0,
                                min_window_calls=3, measured_context=Context)
    assert measured.window_calls == 3
    # after the warm-ups: (r r r, enter, m m m, exit) x 4, then r r r bracketing the last window
    tail = events[-(4 * 8 + 3):]
    assert tail == (["r"] * 3 + ["enter"] + ["m"] * 3 + ["exit"]) * 4 + ["r"] * 3
    assert len(measured.measured_ms) == 4 and len(measured.reference_ms) == 5
    verdict = measured.verdict
    assert verdict is not None and verdict.windows == 4 and verdict.low <= verdict.ratio <= verdict.high
    info = measured.extra_info()
    assert info["overhead_ratio"] == verdict.ratio and info["overhead"]["outcome"] == verdict.outcome

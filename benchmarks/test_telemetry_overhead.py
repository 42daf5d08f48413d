"""Sampling must not disturb what it measures: latency with telemetry on vs off, same session, same run.

Many interleaved windows, off, on, off, ..., on, off (``ptqcore.measure.timing.measure_overhead``): each
"on" window is ptqcore's measurement with a fresh ResourceMonitor sampling around it, each "off"
window the same calls with no monitor. Each window is at least two sampling intervals long, so
that the sampling thread really runs inside it. Each on window's median over the off medians
around it is one ratio; their median gets a bootstrap 95% confidence interval. The check fails
only when the whole interval lies above 1 + 2%, and is skipped as "too noisy to tell" when the
interval is wider than 2%; ratio, interval and the machine's load are recorded either way.
"""

import pytest

from ptqcore.case import Case, Precision
from ptqcore.measure.timing import LatencyPlan, measure_overhead

MAX_OVERHEAD = 0.02
WINDOWS = 12


def test_telemetry_overhead(ptq_suite, benchmark):
    if "onnxruntime" not in ptq_suite.options.backends:
        pytest.skip("the telemetry check times an onnxruntime fp32 case; onnxruntime is not selected")
    if not ptq_suite.options.telemetry:
        pytest.skip("telemetry is off (--ptq-no-telemetry)")
    case = Case(next(iter(ptq_suite.specs)), Precision.FP32, "onnxruntime", "cpu", 1)
    batch = ptq_suite.sample_batch(case)
    options = ptq_suite.options
    plan = LatencyPlan(options.latency_min_rounds, max(2.0, options.latency_min_seconds), options.latency_max_rounds,
                       options.warmup_calls, options.warmup_seconds)
    benchmark.group = "telemetry-overhead"
    benchmark.extra_info.update(case=case.id, kind="telemetry_overhead",
                                measurement="ptqcore latency with telemetry on, interleaved with it off")
    monitors = []

    def new_monitor():
        monitors.append(ptq_suite.new_monitor())
        return monitors[-1]

    with ptq_suite.runner(case) as runner:
        measured = measure_overhead(benchmark, runner.infer, batch, plan, lambda: runner.infer(batch), MAX_OVERHEAD,
                                    windows=WINDOWS, min_window_seconds=2 * options.telemetry_interval,
                                    measured_context=new_monitor)
    benchmark.extra_info.update(measured.extra_info())
    verdict = measured.verdict
    if verdict is None:
        pytest.skip("benchmarking is disabled (--benchmark-disable): nothing was timed")
    benchmark.extra_info.update(telemetry_on_p50_ms=measured.run.stats.p50,
                                sampled=sorted(monitors[-1].summary().as_dict()["sources"]))
    assert verdict.outcome != "above", (
        f"latency with telemetry on is {100 * (verdict.ratio - 1):.1f}% above it off "
        f"({verdict.describe()}; limit {100 * MAX_OVERHEAD:g}%)"
    )
    if verdict.outcome == "noisy":
        pytest.skip(f"too noisy to tell: {verdict.describe()} is wider than the {100 * MAX_OVERHEAD:g}% limit")

"""Sampling must not disturb what it measures: latency with telemetry on vs off, same session, same run.

Off, on, off again (so drift of the machine affects both sides alike), then the medians compare.
"""

import pytest

from ptqcore.case import Case, Precision
from ptqcore.stats import LatencyStats, time_calls
from ptqcore.timing import LatencyPlan, benchmark_latency, reference_half_rounds

MAX_OVERHEAD = 0.02


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
    benchmark.extra_info.update(case=case.id, measurement="ptqcore latency with telemetry on, next to it off")
    with ptq_suite.runner(case) as runner:
        half = reference_half_rounds(lambda: runner.infer(batch), plan)
        off_before = time_calls(lambda: runner.infer(batch), half)
        run = benchmark_latency(benchmark, runner.infer, batch, plan, monitor=ptq_suite.new_monitor())
        if run.stats is None:
            pytest.skip("benchmarking is disabled (--benchmark-disable): nothing was timed")
        # as many calls after as before, so that drift of the machine weighs on both sides alike
        off = LatencyStats.from_seconds(off_before + time_calls(lambda: runner.infer(batch), half), 1)
    ratio = run.stats.p50 / off.p50
    benchmark.extra_info.update(telemetry_off_p50_ms=off.p50, telemetry_on_p50_ms=run.stats.p50, overhead_ratio=ratio,
                                sampled=sorted(run.resources["inference"]["sources"]))
    assert ratio <= 1.0 + MAX_OVERHEAD, (
        f"latency with telemetry on ({run.stats.p50:.4f} ms) is {100 * (ratio - 1):.1f}% above it off ({off.p50:.4f} ms)"
    )

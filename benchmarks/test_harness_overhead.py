"""The harness must add almost nothing: ptqcore's latency vs a bare ``session.run`` loop.

Both measure the same ONNX Runtime session (same model file, same threads) in the same run: a
bare loop, then ptqcore's measurement (warm-up, planned rounds, pytest-benchmark), then the bare
loop again, so that drift of the machine affects both sides alike. The medians are compared.
"""

import statistics

import pytest

from ptqcore.case import Case, Precision
from ptqcore.stats import time_calls
from ptqcore.timing import LatencyPlan, benchmark_latency, reference_half_rounds

MAX_OVERHEAD = 0.03


def test_harness_overhead(ptq_suite, benchmark):
    if "onnxruntime" not in ptq_suite.options.backends:
        pytest.skip("the overhead check times an onnxruntime fp32 case; onnxruntime is not selected")
    case = Case(next(iter(ptq_suite.specs)), Precision.FP32, "onnxruntime", "cpu", 1)
    batch = ptq_suite.sample_batch(case)
    options = ptq_suite.options
    plan = LatencyPlan(options.latency_min_rounds, options.latency_min_seconds, options.latency_max_rounds,
                       options.warmup_calls, options.warmup_seconds)
    benchmark.group = "harness-overhead"
    benchmark.extra_info.update(case=case.id, measurement="ptqcore latency next to a bare session.run loop")
    with ptq_suite.runner(case) as runner:
        feed = {runner.session.get_inputs()[0].name: batch}

        def bare():
            return runner.session.run(None, feed)

        half = reference_half_rounds(bare, plan)
        bare_before = time_calls(bare, half)
        run = benchmark_latency(benchmark, runner.infer, batch, plan)
        stats = run.stats
        if stats is None:
            pytest.skip("benchmarking is disabled (--benchmark-disable): nothing was timed")
        bare = bare_before + time_calls(bare, half)  # as many calls after as before: drift cancels
    bare_ms = statistics.median(bare) * 1000.0
    ratio = stats.p50 / bare_ms
    benchmark.extra_info.update(bare_p50_ms=bare_ms, harness_p50_ms=stats.p50, overhead_ratio=ratio, bare_rounds=len(bare))
    assert ratio <= 1.0 + MAX_OVERHEAD, (
        f"ptqcore's median {stats.p50:.4f} ms is {100 * (ratio - 1):.1f}% above the bare loop's {bare_ms:.4f} ms"
    )

"""The harness must add almost nothing: ptqcore's latency vs a bare ``session.run`` loop.

Both measure the same ONNX Runtime session (same model file, same threads) in the same run, in
many short interleaved windows: bare, harness, bare, ..., harness, bare. The harness windows are
ptqcore's own measurement (``benchmark_latency``: warm-up, pytest-benchmark's timed rounds); the
bare windows run untimed between its rounds (``ptqcore.measure.timing.measure_overhead``). Each harness
window's median over the bare medians around it is one ratio; their median gets a bootstrap 95%
confidence interval. The check fails only when the whole interval lies above 1 + 3%, and is
skipped as "too noisy to tell" when the interval is wider than 3% (a busy or unsteady machine
cannot resolve a 3% overhead); ratio, interval and the machine's load are recorded either way.
"""

import pytest

from ptqcore.case import Case, Precision
from ptqcore.measure.timing import LatencyPlan, measure_overhead

MAX_OVERHEAD = 0.03
WINDOWS = 24


def test_harness_overhead(ptq_suite, benchmark):
    if "onnxruntime" not in ptq_suite.options.backends:
        pytest.skip("the overhead check times an onnxruntime fp32 case; onnxruntime is not selected")
    case = Case(next(iter(ptq_suite.specs)), Precision.FP32, "onnxruntime", "cpu", 1)
    batch = ptq_suite.sample_batch(case)
    options = ptq_suite.options
    plan = LatencyPlan(options.latency_min_rounds, options.latency_min_seconds, options.latency_max_rounds,
                       options.warmup_calls, options.warmup_seconds)
    benchmark.group = "harness-overhead"
    benchmark.extra_info.update(case=case.id, kind="harness_overhead",
                                measurement="ptqcore latency interleaved with a bare session.run loop")
    with ptq_suite.runner(case) as runner:
        feed = {runner.session.get_inputs()[0].name: batch}
        measured = measure_overhead(benchmark, runner.infer, batch, plan, lambda: runner.session.run(None, feed),
                                    MAX_OVERHEAD, windows=WINDOWS, min_window_seconds=0.05)
    benchmark.extra_info.update(measured.extra_info())
    verdict = measured.verdict
    if verdict is None:
        pytest.skip("benchmarking is disabled (--benchmark-disable): nothing was timed")
    benchmark.extra_info.update(harness_p50_ms=measured.run.stats.p50)
    assert verdict.outcome != "above", (
        f"ptqcore's latency is {100 * (verdict.ratio - 1):.1f}% above the bare loop's "
        f"({verdict.describe()}; limit {100 * MAX_OVERHEAD:g}%)"
    )
    if verdict.outcome == "noisy":
        pytest.skip(f"too noisy to tell: {verdict.describe()} is wider than the {100 * MAX_OVERHEAD:g}% limit")

"""Latency per case, after an accuracy pass on the same artifact.

Accuracy is measured first, in its own untimed pass; then the same artifact is warmed up and
timed for a planned number of rounds (at least N calls and S seconds) by pytest-benchmark.
"""

from ptqcore.timing import LatencyPlan, benchmark_latency


def test_latency(case, ptq_suite, benchmark):
    quality = ptq_suite.quality(case)
    options = ptq_suite.options
    plan = LatencyPlan(
        min_rounds=options.latency_min_rounds,
        min_seconds=options.latency_min_seconds,
        max_rounds=options.latency_max_rounds,
        warmup_calls=options.warmup_calls,
        warmup_seconds=options.warmup_seconds,
    )
    batch = ptq_suite.sample_batch(case)
    benchmark.group = f"latency-b{case.batch_size}"
    benchmark.extra_info.update(case=case.id, measurement="latency: one inference, end to end")
    with ptq_suite.runner(case) as runner:
        stats, first_ms, rounds = benchmark_latency(benchmark, runner.infer, batch, plan)
    ptq_suite.book.update(
        case,
        latency_ms=stats.summary() if stats else None,
        throughput_ips=stats.throughput_ips if stats else None,
        first_inference_ms=first_ms,
        latency_rounds=rounds,
    )
    assert 0.0 <= quality["top1"] <= 1.0
    assert stats is None or stats.n == rounds

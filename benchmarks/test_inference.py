"""Latency per case, after an accuracy pass on the same artifact.

Accuracy is measured first, in its own untimed pass; then the same artifact is warmed up and
timed for a planned number of rounds (at least N calls and S seconds) by pytest-benchmark. On a
GPU, ``latency_ms`` stays end to end (copies included) and ``gpu_compute_ms`` holds the CUDA-event
time of the compute alone; TensorRT cases add the engine census (``layers_by_precision``,
``reformat_layers``).
"""

from ptqcore.measure.stats import LatencyStats
from ptqcore.measure.timing import LatencyPlan, benchmark_latency


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
    benchmark.extra_info.update(case=case.id, kind="latency",
                                measurement="latency: one inference, end to end")
    gpu = {}
    with ptq_suite.runner(case) as runner:
        if runner.times_gpu_compute:  # GPU runners time compute by CUDA events; forget the warm-up's
            runner.take_gpu_compute_ms()
        run = benchmark_latency(benchmark, runner.infer, batch, plan, monitor=ptq_suite.new_monitor())
        if runner.times_gpu_compute and run.stats is not None:
            compute_ms = runner.take_gpu_compute_ms()[-run.rounds:]
            assert len(compute_ms) == run.rounds, f"{case.id}: {len(compute_ms)} GPU compute times for {run.rounds} rounds"
            gpu["gpu_compute_ms"] = LatencyStats.from_seconds([ms / 1e3 for ms in compute_ms], case.batch_size).summary()
        if runner.has_census:
            gpu.update(runner.census() or {})
    if run.load and run.load.get("busy"):
        ptq_suite.report(f"warning: the machine was busy before {case.id}'s latency window (other processes"
                         f" {run.load['other_cpu_pct']:.0f}% of one core, load average {run.load['loadavg_1m']}):"
                         " its latency may be inflated")
    resources = dict(ptq_suite.book.record(case).figures.get("resources") or {})
    resources.update(run.resources)
    ptq_suite.book.update(
        case,
        latency_ms=run.stats.summary() if run.stats else None,
        throughput_ips=run.stats.throughput_ips if run.stats else None,
        first_inference_ms=run.first_ms,
        latency_rounds=run.rounds,
        resources=resources or None,
        energy_j_per_inference=run.energy["net_j"] if run.energy else None,
        energy=run.energy,
        stability=run.stability,
        machine_state=run.machine_state,
        machine_load=run.load,
        **gpu,
    )
    assert quality["eval_images"] > 0, f"{case.id}: its accuracy was measured on no image"
    if run.stats is None:  # an empty timed window: pytest-benchmark was disabled or ran nothing
        assert benchmark.disabled, f"{case.id}: no latency was measured"
    else:
        assert run.stats.n == run.rounds, f"{case.id}: {run.stats.n} timed calls recorded for {run.rounds} rounds"
        assert run.stats.summary()["p50"] > 0, f"{case.id}: a median latency of 0 ms is no measurement"

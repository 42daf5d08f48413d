"""Every ONNX Runtime INT8 layout on this CPU, side by side in one run: latency and what its kernels lose.

Opt-in (``--ptq-int8-layouts``). For each model's ONNX Runtime INT8 case, the three layouts
(``u8s8``, ``s8s8``, ``u8s8-reduce-range``) are quantized from the same ranges, evaluated against
their own fake-quant reference (the kernel part of the drop), and timed at batch 1 in interleaved
windows (layout A, B, C, A, B, C, ...) so that drift of the machine weighs on all alike; the
median of each layout's windows is reported, with its ratio to the layout ``auto`` picks. Nothing
is asserted about speed: which layout is fastest is a finding about the CPU, recorded in
``extra_info`` and printed.
"""

import statistics
import tempfile
from pathlib import Path

import pytest

from ptqcore.backends.onnxruntime import OnnxRuntimeBackend, OrtRunner
from ptqcore.cpu_isa import INT8_RECIPES
from ptqcore.measure.accuracy import drop_pp, predict
from ptqcore.measure.stats import time_calls, warm_up

WINDOWS = 15
CALLS_PER_WINDOW = 20


@pytest.mark.ptq_cases(select="int8", opt_in="--ptq-int8-layouts")
def test_int8_layouts(case, ptq_suite, benchmark):
    if case.backend != "onnxruntime" or case.batch_size != 1:
        pytest.skip("compared once per model, on its onnxruntime INT8 case at batch 1")
    int8 = ptq_suite.int8_inputs(case)
    data = ptq_suite.dataset(case.model)
    batch = ptq_suite.sample_batch(case)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="ptqcore-layouts-") as scratch:
        runners = {}
        for layout in INT8_RECIPES:
            path = OnnxRuntimeBackend(ptq_suite.threads, layout).build(case, int8.prepared_onnx,
                                                                       Path(scratch) / f"{layout}.onnx", int8)
            batches = list(data.evaluation_batches(ptq_suite.options.eval_batch_size))
            with OrtRunner(path, ptq_suite.threads, reference=True) as reference:
                fake = predict(reference.infer, batches)
            runners[layout] = OrtRunner(path, ptq_suite.threads).__enter__()
            real = predict(runners[layout].infer, batches)
            figures[layout] = {"top1": real.top1_accuracy, "top1_reference": fake.top1_accuracy,
                               "accuracy_drop_kernel_pp": drop_pp(fake.top1_accuracy, real.top1_accuracy),
                               "agreement_reference": real.agreement_top1(fake)}
        try:
            for runner in runners.values():
                warm_up(lambda: runner.infer(batch), 10, 0.3)
            windows = {layout: [] for layout in runners}

            def one_round():
                for layout, runner in runners.items():
                    windows[layout].append(statistics.median(time_calls(lambda: runner.infer(batch),
                                                                        CALLS_PER_WINDOW)))

            benchmark.group = "int8-layouts"
            benchmark.extra_info.update(case=case.id, kind="int8_layouts",
                                        measurement="ONNX Runtime INT8 layouts, interleaved windows")
            benchmark.pedantic(one_round, rounds=WINDOWS, iterations=1)
        finally:
            for runner in runners.values():
                runner.__exit__(None, None, None)
    auto = ptq_suite.int8_layout
    for layout in runners:
        figures[layout]["p50_ms"] = statistics.median(windows[layout]) * 1e3
    for layout in runners:
        figures[layout]["latency_vs_auto"] = figures[layout]["p50_ms"] / figures[auto]["p50_ms"]
    benchmark.extra_info.update(cpu_isa=ptq_suite.cpu_isa.name, auto=auto, layouts=figures)
    for layout, f in figures.items():
        ptq_suite.report(f"{case.model} {layout}{' (auto)' if layout == auto else ''}: p50 {f['p50_ms']:.3f} ms"
                         f" ({f['latency_vs_auto']:.2f}x auto), top-1 {f['top1']:.4f}, kernel drop"
                         f" {f['accuracy_drop_kernel_pp']:+.2f} pp, agreement with reference {f['agreement_reference']:.3f}")
    assert set(figures) == set(INT8_RECIPES)

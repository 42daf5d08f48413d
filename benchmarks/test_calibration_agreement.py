"""ptqcore's calibration against ONNX Runtime's own calibrator of the same method, by top-1.

Opt-in (``--ptq-calibration-agreement``): ONNX Runtime's entropy calibrator takes minutes per study
model. For each ONNX Runtime INT8 case, the case's ranges (ptqcore's one statistics pass, graph
outputs at their observed range) and ONNX Runtime's own calibrator's ranges
(``create_calibrator`` with ``CalibrationMethod.<method>``, 2,048 bins for entropy and percentile)
quantize the same prepared model with the same recipe; both Q/DQ files run as fake-quant
references (graph optimizations off, so no CPU's kernels change the figures) on the evaluation
images. The figures (top-1 of each, their agreement with FP32) go to ``extra_info``; the assertion:
ptqcore's ranges lose at most :data:`MAX_WORSE_PP` of top-1 more than ONNX Runtime's own.
"""

import tempfile
from pathlib import Path

import pytest

from ptqcore.backends.onnxruntime import OrtRunner
from ptqcore.build.quantize import onnxruntime_calibrator_ranges, qdq_onnx_from_onnx, write_ranges
from ptqcore.measure.accuracy import drop_pp, predict

#: How much more top-1 ptqcore's ranges may lose than ONNX Runtime's own calibrator's.
MAX_WORSE_PP = 1.0
_ORT_METHOD = {"minmax": ("MinMax", {}), "entropy": ("Entropy", {"num_bins": 2048, "num_quantized_bins": 128}),
               "percentile": ("Percentile", {"num_bins": 2048})}


@pytest.mark.ptq_cases(select="int8", opt_in="--ptq-calibration-agreement")
def test_calibration_agreement(case, ptq_suite, benchmark):
    if case.backend != "onnxruntime":
        pytest.skip("compared on the onnxruntime INT8 case of each model")
    int8 = ptq_suite.int8_inputs(case)
    data = ptq_suite.dataset(case.model)
    recipe = ptq_suite.backend(case.backend).int8_recipe(case)
    method, options = _ORT_METHOD[case.recipe]
    if case.recipe == "percentile":
        options = dict(options, percentile=ptq_suite.options.percentile)
    fp32 = ptq_suite.predictions(ptq_suite.reference_case(case))
    ours = ptq_suite.int8_reference(case)

    def theirs():
        with tempfile.TemporaryDirectory(prefix="ptqcore-ort-calibration-") as scratch:
            ranges = onnxruntime_calibrator_ranges(int8.prepared_onnx, int8.calibration_images, method, options)
            path = write_ranges(ranges, case.recipe, Path(scratch) / "ranges.json")
            qdq = qdq_onnx_from_onnx(int8.prepared_onnx, path, recipe, Path(scratch) / "qdq.onnx")
            with OrtRunner(qdq, ptq_suite.threads, reference=True) as runner:
                return predict(runner.infer, data.evaluation_batches(ptq_suite.options.eval_batch_size))

    benchmark.group = "calibration-agreement"
    benchmark.extra_info.update(case=case.id, kind="calibration_agreement",
                                measurement="ONNX Runtime's own calibrator, quantized and evaluated like the case")
    reference = benchmark.pedantic(theirs, rounds=1, iterations=1)
    figures = {"top1_fp32": fp32.top1_accuracy, "top1_ptqcore": ours.top1_accuracy,
               "top1_onnxruntime": reference.top1_accuracy, "agreement_fp32_ptqcore": ours.agreement_top1(fp32),
               "agreement_fp32_onnxruntime": reference.agreement_top1(fp32)}
    benchmark.extra_info.update(figures)
    ptq_suite.report(f"{case.id}: top-1 FP32 {fp32.top1_accuracy:.4f}, ptqcore {case.recipe}"
                     f" {ours.top1_accuracy:.4f}, ONNX Runtime's {method} {reference.top1_accuracy:.4f}")
    worse = drop_pp(reference.top1_accuracy, ours.top1_accuracy)
    assert worse <= MAX_WORSE_PP, (
        f"{case.id}: ptqcore's {case.recipe} ranges lose {worse:.2f} pp more top-1 than ONNX Runtime's own"
        f" {method} calibrator (limit {MAX_WORSE_PP} pp)")

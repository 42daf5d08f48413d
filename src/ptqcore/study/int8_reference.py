"""The fake-quant reference of an INT8 case, and the split of its accuracy drop.

An INT8 artifact computes (or should compute) a Q/DQ ONNX file: the artifact itself for ONNX
Runtime, the TensorRT-form Q/DQ model for TensorRT. Run by ONNX Runtime with every graph
optimization off, each QuantizeLinear / DequantizeLinear of that file executes as written, with the
layer between them in float: fake quantization, which no CPU instruction set or engine changes.
Against it the drop splits into two parts that add up to ``accuracy_drop_pp``:

* ``accuracy_drop_quantization_pp``: the reference vs the FP32 reference case (ranges, rounding);
* ``accuracy_drop_kernel_pp``: the backend vs the reference (what its kernels add, e.g. U8S8
  saturation on x86 without VNNI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ptqcore.backends import Int8Inputs
from ptqcore.backends.onnxruntime import OrtRunner
from ptqcore.case import Case
from ptqcore.measure.accuracy import Predictions, drop_pp, predict
from ptqcore.pipeline import readable
from ptqcore.store import file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from ptqcore.suite import Suite


def reference_file(suite: "Suite", case: Case) -> Path:
    """The Q/DQ file of an INT8 case's reference: its artifact, or the backend's Q/DQ model (cached)."""
    backend = suite.backend(case.backend)
    if backend.int8_artifact_is_reference:
        return suite.artifact(case).path
    import onnxruntime

    int8 = suite.int8_inputs(case)
    inputs = {"backend": backend.name, "recipe": backend.int8_record_fields(case),
              "sources": [file_sha256(int8.prepared_onnx), file_sha256(int8.ranges)],
              "onnxruntime": onnxruntime.__version__}
    if int8.float_nodes:
        inputs["float_nodes"] = list(int8.float_nodes)
    entry, _ = suite.store.load_or_build(
        "reference", inputs, "reference.onnx", lambda path: backend.int8_reference_onnx(case, int8, path), readable,
        f"{case.backend} INT8 reference model of {case.model}",
    )
    return entry.path


def reference_predictions(suite: "Suite", case: Case) -> Predictions:
    """Top-5 predictions of the reference run on the case's evaluation images."""
    data = suite.dataset(case.model)
    path = reference_file(suite, case)
    suite.report(f"evaluating the fake-quant reference of {case.id} on {len(data.evaluation)} {data.name} images")
    with OrtRunner(path, suite.threads, reference=True) as runner:
        return predict(runner.infer, data.evaluation_batches(suite.options.eval_batch_size))


def ranges_figures(int8: Int8Inputs) -> dict:
    """The record's ``ranges``: what the case's calibration ranges clipped
    (:func:`ptqcore.build.calibration.clipping_summary`), with the method and how graph outputs were
    treated; ``{}`` for a backend that calibrates by itself (no ranges of ptqcore's)."""
    if int8.ranges is None or int8.statistics is None:
        return {}
    from ptqcore.build.calibration import clipping_summary, load_statistics
    from ptqcore.build.quantize import read_ranges

    method, ranges = read_ranges(int8.ranges)
    summary = clipping_summary(load_statistics(int8.statistics), ranges, int8.observed)
    return {"ranges": {"method": method, "outputs": "observed range (min/max), whatever the method", **summary}}


def int8_figures(suite: "Suite", case: Case, predictions: Predictions, reference: Predictions,
                 fake: Predictions) -> dict:
    """How an INT8 case was quantized (recipe, ``cpu_isa``, what its ranges clipped) and its drop in
    two parts that add up: ``reference`` (float) to ``fake`` (its fake-quant reference,
    :func:`reference_predictions`) is quantization, ``fake`` to ``predictions`` the INT8 kernels."""
    backend = suite.backend(case.backend)
    return {
        **(ranges_figures(suite.int8_inputs(case)) if backend.int8_needs_ranges(case) else {}),
        **backend.int8_record_fields(case),
        "cpu_isa": suite.cpu_isa.name,
        "top1_reference": fake.top1_accuracy,
        "agreement_reference": predictions.agreement_top1(fake),
        "accuracy_drop_quantization_pp": drop_pp(reference.top1_accuracy, fake.top1_accuracy),
        "accuracy_drop_kernel_pp": drop_pp(fake.top1_accuracy, predictions.top1_accuracy),
    }

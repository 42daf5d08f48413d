"""Quality gates: accuracy drop and size reduction per precision, INT8 kernels against their
fake-quant reference, and the base model's own accuracy.

Limits come from the thresholds file (``--ptq-thresholds``) merged over ptqcore's defaults; a
failure message names the limit and where it came from.
"""

import pytest

from ptqcore.build.kernel_probe import kernel_drop_hint, probe_this_cpu
from ptqcore.study.sensitivity import drop_message_tail


def _limits(ptq_suite, case):
    limits = ptq_suite.thresholds.limits_for(case.model, case.precision.value, case.backend, case.technique)
    ptq_suite.book.update(case, limits={
        "max_accuracy_drop_pp": limits.max_accuracy_drop_pp,
        "min_size_reduction": limits.min_size_reduction,
        "max_kernel_drop_pp": limits.max_kernel_drop_pp,
        "reason": limits.reason,
    })
    return limits


@pytest.mark.ptq_cases(select="compressed")
def test_accuracy_drop(case, ptq_suite):
    limits = _limits(ptq_suite, case)
    if limits.max_accuracy_drop_pp is None:
        pytest.skip(f"no accuracy-drop limit for {case.precision.value} in {ptq_suite.thresholds.source}")
    quality = ptq_suite.quality(case)
    failing = quality["accuracy_drop_pp"] > limits.max_accuracy_drop_pp
    tail = drop_message_tail(ptq_suite, case, failing)
    assert not failing, (
        f"{case.id}: top-1 {quality['top1']:.4f} vs {quality['reference']} {quality['top1_base']:.4f}:"
        f" drop {quality['accuracy_drop_pp']:.2f} pp > {limits.max_accuracy_drop_pp} pp ({limits.reason})" + tail
    )


@pytest.mark.ptq_cases(select="compressed")
def test_size_reduction(case, ptq_suite):
    limits = _limits(ptq_suite, case)
    if limits.min_size_reduction is None:
        pytest.skip(f"no size-reduction limit for {case.precision.value} in {ptq_suite.thresholds.source}")
    quality = ptq_suite.quality(case)
    assert quality["size_reduction"] >= limits.min_size_reduction, (
        f"{case.id}: {quality['size_bytes_base']} -> {quality['size_bytes']} bytes is"
        f" {quality['size_reduction']:.2f}x < {limits.min_size_reduction}x ({limits.reason})"
    )


@pytest.mark.ptq_cases(select="quantized")
def test_int8_kernel_matches_reference(case, ptq_suite):
    """The backend's INT8 kernels must compute what the Q/DQ file says: top-1 against the same file
    run with graph optimizations off (fake quantization) may drop by at most max_kernel_drop_pp."""
    limits = _limits(ptq_suite, case)
    if limits.max_kernel_drop_pp is None:
        pytest.skip(f"no kernel-drop limit for int8 in {ptq_suite.thresholds.source}")
    quality = ptq_suite.quality(case)
    kernel = quality["accuracy_drop_kernel_pp"]
    assert kernel <= limits.max_kernel_drop_pp, (
        f"{case.id}: the {quality['int8_recipe']} kernels lose {kernel:.2f} pp against the fake-quant reference"
        f" (top-1 {quality['top1']:.4f} vs {quality['top1_reference']:.4f}, agreement"
        f" {quality['agreement_reference']:.3f}) > {limits.max_kernel_drop_pp} pp ({limits.reason}); "
        + kernel_drop_hint(case.backend, quality["int8_recipe"], ptq_suite.cpu_isa,
                           probe_this_cpu() if case.backend == "onnxruntime" else None)
    )


@pytest.mark.ptq_cases(select="base")
def test_base_accuracy(case, ptq_suite):
    floor = ptq_suite.thresholds.min_base_top1(ptq_suite.options.dataset)
    if floor is None:
        pytest.skip(f"no base-accuracy floor for data set {ptq_suite.options.dataset!r}")
    top1 = ptq_suite.quality(case)["top1"]
    assert top1 >= floor, f"{case.model} base model reaches top-1 {top1:.4f} < {floor} on {ptq_suite.options.dataset}"

"""Compression cost per case: phase 1 (PyTorch -> ONNX) and phase 2 (ONNX -> ready-to-run artifact).

Every round does the whole work from scratch in a temporary folder (the cache is not used),
as the study timed each conversion: 1 warm-up round, then the measured rounds.
"""

import pytest


@pytest.mark.ptq_cases(select="compressed")
def test_compression(case, ptq_suite, benchmark):
    if ptq_suite.specs[case.model].has_torch_model:
        ptq_suite.base_model(case.model, case.technique)  # train (prune, distil) or load it now, outside every round
    rounds = []
    options = ptq_suite.options
    benchmark.group = "compression"
    benchmark.extra_info.update(case=case.id, kind="compression",
                                measurement="compression round: phase 1 + phase 2")
    benchmark.pedantic(lambda: rounds.append(ptq_suite.compress_once(case)), rounds=options.compress_rounds,
                       warmup_rounds=options.compress_warmup, iterations=1)
    measured = rounds[options.compress_warmup:]
    ptq_suite.record_compression(case, measured)
    assert len(measured) == options.compress_rounds or benchmark.disabled

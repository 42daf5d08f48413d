"""Compression cost per case: phase 1 (PyTorch -> ONNX) and phase 2 (ONNX -> ready-to-run artifact).

Every round does the whole work from scratch in a temporary folder (the cache is not used), as the
study timed each conversion: the measured rounds, after ``--ptq-compress-warmup`` untimed rounds
before the session's first round of each kind of work (measured reason: :mod:`ptqcore.measure.timed_rounds`). Phase 1 is the
same conversion for every precision of a model, so it is timed once per model (in that model's
first compression test, outside pytest-benchmark's rounds) and every precision's record carries
its ``export_s``; pytest-benchmark's rounds here are phase 2.
"""

import pytest


@pytest.mark.ptq_cases(select="compressed")
def test_compression(case, ptq_suite, benchmark):
    ptq_suite.phase_one_rounds(case)  # trains, prunes, distils or loads the base model, then times phase 1 (once per model)
    rounds = []
    options = ptq_suite.options
    benchmark.group = "compression"
    benchmark.extra_info.update(case=case.id, kind="compression",
                                measurement="compression round: phase 2 (phase 1: export_s, timed once per model)")
    warmup = ptq_suite.warmup_rounds(case, phase=2)  # only before the session's first of this kind of build
    benchmark.pedantic(lambda: rounds.append(ptq_suite.compress_once(case)), rounds=options.compress_rounds,
                       warmup_rounds=warmup, iterations=1)
    measured = rounds[warmup:]
    ptq_suite.record_compression(case, measured)
    assert len(measured) == options.compress_rounds or benchmark.disabled

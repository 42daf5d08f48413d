"""Where the time goes, layer by layer: each case under its runtime's own per-layer profiler.

Opt-in (``--ptq-profile-layers``). Runs after every other test (``ptq_last``), each case on a fresh
runner, so the profiler never runs inside the timed latency rounds.
The record gets ``layer_profile`` (totals per category and op type, the top layers, the profiled
total against the measured latency p50; the full table in a CSV beside the JSON) and, for INT8 once
its FP32 (CPU) or FP16 (GPU) twin is profiled too, ``layer_changes`` and, where INT8 is not faster,
``int8_slowdown`` with the measured causes. Nothing is asserted about speed: a slow INT8 is a finding.
"""

import pytest


@pytest.mark.ptq_last
@pytest.mark.ptq_cases(select="compressed", opt_in="--ptq-profile-layers")
def test_layer_profile(case, ptq_suite):
    profile = ptq_suite.profile_layers(case)
    assert profile is not None, f"{case.id}: its runner has no layer profiler"
    assert profile["layers"] > 0, f"{case.id}: the profiler reported no layer"
    assert profile["profiled_ms"] > 0, f"{case.id}: the profiled layers took no time"
    if profile["flag"]:
        ptq_suite.report(f"warning: {case.id}: {profile['flag']}")

"""Timed compression rounds: one round in a scratch folder under a fresh monitor, the warm-ups a
session owes, and the record figures of a case's rounds.

**Warm-up rounds.** ``--ptq-compress-warmup`` untimed rounds run before the first timed round of
each kind of work in a session (phase 1 per exporter and opset; phase 2 per backend, device and
precision), not before every case's. Measured reason (issue 14, 2-core VM, ONNX Runtime 1.32,
four INT8 and four FP32 cases with no warm-up and 4 rounds each): only the session's first round
of a kind was slow (INT8: 2.17 s against 1.41-1.84 s for the next three; phase 1: 0.58 s against
0.45-0.47 s), from imports and first-use set-up; every later case's first round was within the
round-to-round noise of its others (DenseNet-169 INT8 9.26 s against 10.49-12.6 s, EfficientNet-B1
7.24 s against 6.58-7.22 s, MobileNetV3-Large 2.29 s against 2.30-3.24 s). A warm-up per case
repeated that work for nothing: about 40 s of a 5-minute sweep.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager, List, Optional, Set


@dataclass(frozen=True)
class CompressionRound:
    """One timed round of a phase: its seconds (phase 1: ``export_s``; phase 2: ``build_s``, with
    calibration inside it on its own) and the monitor's summary per phase."""

    export_s: Optional[float]
    build_s: Optional[float]
    resources: dict
    #: INT8: pre-processing, the statistics pass and the ranges (part of ``build_s``); else None
    calibration_s: Optional[float] = None


def run_round(monitor, round_once: Callable[[Path, Callable[[str], ContextManager]], CompressionRound]
              ) -> CompressionRound:
    """``round_once(scratch, phase)`` in a fresh scratch folder under ``monitor`` (a fresh
    :class:`~ptqcore.measure.telemetry.ResourceMonitor`, or None); ``phase(name)`` opens the monitor's phase
    of that name. Its result, with the monitor's summaries as ``resources``."""

    def phase(name):
        return monitor.phase(name) if monitor is not None else contextlib.nullcontext()

    with tempfile.TemporaryDirectory(prefix="ptqcore-round-") as scratch, (monitor or contextlib.nullcontext()):
        measured = round_once(Path(scratch), phase)
    summaries = {name: summary.as_dict() for name, summary in monitor.summaries().items()} if monitor else {}
    return replace(measured, resources=summaries)


class WarmUps:
    """How many untimed rounds a kind of work gets before its timed ones: ``rounds`` the first time
    the session asks for that kind, 0 afterwards (module docstring)."""

    def __init__(self, rounds: int) -> None:
        if rounds < 0:
            raise ValueError(f"warm-up rounds must be >= 0, got {rounds}")
        self.rounds = rounds
        self._done: Set[tuple] = set()

    def due(self, kind: tuple) -> int:
        if kind in self._done:
            return 0
        self._done.add(kind)
        return self.rounds


def compression_figures(phase_one: List[CompressionRound], phase_two: List[CompressionRound],
                        resources: Optional[dict]) -> dict:
    """A case's record figures from its model's measured phase 1 rounds and its own phase 2 rounds:
    medians and raw values of ``export_s``, ``build_s`` and ``calibration_s``, and ``resources``
    updated with each phase's last round's summaries."""
    exports = [r.export_s for r in phase_one if r.export_s is not None]
    builds = [r.build_s for r in phase_two if r.build_s is not None]
    calibrations = [r.calibration_s for r in phase_two if r.calibration_s is not None]
    resources = dict(resources or {})
    for last in phase_one[-1:] + phase_two[-1:]:
        resources.update({k: v for k, v in last.resources.items() if k != "total"})
    return {
        "export_s": statistics.median(exports) if exports else None,
        "build_s": statistics.median(builds) if builds else None,
        "export_s_rounds": exports or None,
        "build_s_rounds": builds or None,
        "calibration_s": statistics.median(calibrations) if calibrations else None,
        "calibration_s_rounds": calibrations or None,
        "resources": resources or None,
    }

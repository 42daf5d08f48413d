"""``--ptq-profile-layers``: profile one case after its timed latency rounds, and pair INT8 with its float twin.

:func:`profile_case` runs a fresh runner of the case (never the one that was timed) under the
runtime's own per-layer profiler for :func:`profile_calls` calls after :data:`WARMUP_CALLS`, writes
the full table to ``<folder>/<case id>.csv`` and gives the record's ``layer_profile``
(:func:`ptqcore.measure.layer_profile.summary`). :func:`paired_figures` gives an INT8 case, once its
float twin (:func:`ptqcore.study.layer_compare.reference_precision`) has been profiled too, whichever
ran first, ``layer_changes`` and, where INT8 is not faster, ``int8_slowdown``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Dict, Optional, Tuple

from ptqcore.build.graph_layers import GraphLayers
from ptqcore.case import Case, Precision
from ptqcore.measure.layer_profile import LayerProfile, summary, write_table
from ptqcore.records import latency_p50
from ptqcore.study.layer_compare import layer_changes, reference_precision, slowdown_causes

#: The profiled calls last about this long (s), within :data:`MIN_CALLS` and :data:`MAX_CALLS`: each
#: ONNX Runtime call writes one trace event per node (a DenseNet has about a thousand).
PROFILE_SECONDS = 1.0
MIN_CALLS = 20
MAX_CALLS = 100
WARMUP_CALLS = 5


def profile_calls(latency_p50_ms: Optional[float]) -> int:
    """How many calls to profile for a case whose latency p50 is ``latency_p50_ms`` (None: the most)."""
    if not latency_p50_ms or latency_p50_ms <= 0 or latency_p50_ms * MAX_CALLS <= 1e3 * PROFILE_SECONDS:
        return MAX_CALLS
    return max(MIN_CALLS, math.ceil(1e3 * PROFILE_SECONDS / latency_p50_ms))


def table_name(folder: Path, relative_to: Optional[Path], case: Case) -> Tuple[Path, str]:
    """(where the table is written, how the record names it: relative to ``relative_to`` where the
    folder lies in it, as a run's JSON and its tables travel together, else the absolute path)."""
    path = Path(folder) / f"{case.id}.csv"
    if relative_to is not None:
        try:
            return path, str(path.relative_to(relative_to))
        except ValueError:
            pass
    return path, str(path.resolve())


def profile_case(study, case: Case, folder: Path, relative_to: Optional[Path]) -> Optional[Tuple[LayerProfile, dict]]:
    """(profile, ``layer_profile`` record field) of ``case``, or None where its runner has no profiler
    (the PyTorch base). The latency it is checked against is the case's recorded p50."""
    record = study.book.record(case).figures
    p50 = latency_p50(record)
    runner = study.runner(case)
    if not runner.has_layer_profiler:
        return None
    graph = None
    if case.precision.compressed and study.backend(case.backend).artifact_suffix != ".onnx":
        graph = GraphLayers.from_onnx(study.onnx(case.model, study.export_settings(case.backend), case.technique).path)
    calls = profile_calls(p50)
    study.report(f"profiling the layers of {case.id} ({calls} calls)")
    with runner:
        profile = runner.profile_layers(study.sample_batch(case), calls, WARMUP_CALLS, case.precision.quantized, graph)
    path, name = table_name(folder, relative_to, case)
    write_table(profile, path)
    return profile, summary(profile, p50, name)


def twin_of(case: Case) -> Case:
    """The float case an INT8 case must beat (same model, backend, device, batch size, technique)."""
    precision = Precision(reference_precision(case.device))
    return replace(case, precision=precision, recipe="", calibration_size=None)


def paired_figures(study, profiles: Dict[Case, LayerProfile], case: Case) -> Dict[Case, dict]:
    """Record fields for the INT8 cases that ``case`` (just profiled) completes a pair with: itself,
    if its twin is in ``profiles``, or the INT8 cases whose twin it is."""
    out: Dict[Case, dict] = {}
    pairs = [(case, twin_of(case))] if case.precision.quantized else [
        (other, case) for other in profiles if other.precision.quantized and twin_of(other) == case]
    for quantized, twin in pairs:
        if quantized not in profiles or twin not in profiles:
            continue
        mine, theirs = latency_p50(study.book.record(quantized).figures), latency_p50(study.book.record(twin).figures)
        speedup = theirs / mine if mine and theirs else None
        name = twin.precision.value.upper()
        out[quantized] = {
            "layer_changes": {**layer_changes(profiles[twin], profiles[quantized], twin.id), "speedup": speedup,
                              "reference_precision": name},
            "int8_slowdown": slowdown_causes(profiles[twin], profiles[quantized], speedup, name,
                                             quantized.precision.value.upper()),
        }
    return out

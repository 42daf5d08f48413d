"""What the report shows, read from the runs' records (no plotting here).

A :class:`CaseView` is one record with the figures the report uses, each ``None`` when the record
does not have it (skipped, failed before it was measured, or not measurable on that machine:
no GPU, no power source). Nothing here turns a missing figure into 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.case import DEFAULT_TECHNIQUE, PRECISION_NAMES
from ptqcore.records import record_key
from ptqcore.results.compare import Run, run_from_file
from ptqcore.results.runfile import load_run_files

#: Order of precisions in tables and figures; others follow in name order.
PRECISION_ORDER = PRECISION_NAMES
#: Telemetry phases in the order they happen in a case.
PHASES = ("export", "calibration", "build", "idle", "inference")
#: Environment keys named on every figure and in the environment table, when known.
SOFTWARE_KEYS = ("onnxruntime", "torch", "tensorrt", "cuda", "jetpack", "onnx")
UNKNOWN = ("unknown", "", None)
#: What a label puts before a varying field's value (``b8``, ``cal32``), as in case ids.
LABEL_PREFIXES = {"batch_size": "b", "calibration_size": "cal"}


def number(value) -> Optional[float]:
    """``value`` as a finite float, else ``None`` (missing, null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def nested(record: Mapping, *path: str) -> Optional[float]:
    """The number at ``record[path[0]][path[1]]...``, or ``None`` when any step is absent."""
    value = record
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return number(value)


@dataclass(frozen=True)
class CaseView:
    """One case of one run as the report shows it."""

    record: Mapping
    label: str
    #: base p50 / this p50, the base on the same device (None across devices or when missing)
    speedup: Optional[float]
    #: FP32 p50 / this p50, the FP32 case of the same backend and device: what the precision alone gives
    speedup_fp32: Optional[float] = None

    @property
    def key(self) -> tuple:
        return record_key(self.record)

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def precision(self) -> str:
        return str(self.record.get("precision"))

    @property
    def is_base(self) -> bool:
        return self.precision == "base"

    def get(self, *path: str) -> Optional[float]:
        return nested(self.record, *path)

    def rounds(self, name: str) -> List[float]:
        values = self.record.get(f"{name}_rounds")
        return [v for v in (number(x) for x in values) if v is not None] if isinstance(values, list) else []

    @property
    def status_text(self) -> str:
        """``passed``, ``failed: <problems>``, ``skipped: <reason>`` or ``not run``."""
        if self.status == "failed":
            problems = self.record.get("problems") or []
            return "failed: " + ("; ".join(str(p) for p in problems) if problems else "no problem recorded")
        if self.status == "skipped":
            return f"skipped: {self.record.get('skip_reason') or 'no reason given'}"
        return self.status

    def resources(self) -> Dict[str, Mapping]:
        """Telemetry summaries by phase, in :data:`PHASES` order (empty without telemetry)."""
        found = self.record.get("resources")
        if not isinstance(found, Mapping):
            return {}
        ordered = [p for p in PHASES if p in found] + sorted(p for p in found if p not in PHASES)
        return {p: found[p] for p in ordered if isinstance(found[p], Mapping)}


@dataclass(frozen=True)
class RunView:
    """One run: its file, comparison-ready :class:`~ptqcore.results.compare.Run`, cases and environment."""

    source: str
    run: Run
    cases: Tuple[CaseView, ...]
    environment: Mapping[str, object]

    @property
    def name(self) -> str:
        return Path(self.source).name

    def device_text(self) -> str:
        """The machine in words: device model, GPU, CPU model and cores, where known."""
        env = self.environment
        parts = []
        if env.get("device_model") not in UNKNOWN:
            parts.append(str(env["device_model"]))
        if env.get("gpu_name") not in UNKNOWN:
            parts.append(f"GPU {env['gpu_name']}")
        if env.get("cpu_model") not in UNKNOWN:
            cores = f" x{env['cpu_count']}" if env.get("cpu_count") not in UNKNOWN else ""
            parts.append(f"CPU {env['cpu_model']}{cores}")
        return ", ".join(parts) or "device unknown"

    def software_text(self) -> str:
        known = [f"{key} {self.environment[key]}" for key in SOFTWARE_KEYS if self.environment.get(key) not in UNKNOWN]
        return ", ".join(known) or "software versions unknown"

    def footer(self) -> str:
        """The line every figure of this run carries: run, device, software versions."""
        return f"{self.name} | {self.device_text()} | {self.software_text()}"


def load_report_runs(paths: Sequence, allow_incomplete: bool = False) -> List[RunView]:
    """Read and validate the runs through the one loader (:func:`ptqcore.results.runfile.load_run_files`,
    raising its :class:`~ptqcore.results.runfile.RunFileError`) and keep each run's full records for the figures."""
    views = []
    for path, run_file in zip(paths, load_run_files(paths, allow_incomplete)):
        machine = run_file.machine_info
        section = machine.get("ptqcore") if isinstance(machine.get("ptqcore"), dict) else {}
        environment = section.get("environment") if isinstance(section.get("environment"), dict) else {}
        views.append(RunView(str(path), run_from_file(run_file), case_views(run_file.records), environment))
    return views


def case_views(records: Sequence[Mapping]) -> Tuple[CaseView, ...]:
    """Records sorted by model, then precision (:data:`PRECISION_ORDER`), backend, device, batch
    size, with labels that name only what varies, and speed-ups against each model's base."""
    def order(record: Mapping) -> tuple:
        precision = str(record.get("precision"))
        rank = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
        technique = str(record.get("technique") or DEFAULT_TECHNIQUE)
        return (str(record.get("model")), technique != DEFAULT_TECHNIQUE, technique, rank, precision, str(record.get("backend")), str(record.get("device")),
                str(record.get("batch_size")), str(record.get("dataset")), str(record.get("calibration")),
                record.get("calibration_size") or 0)

    records = sorted(records, key=order)
    varying = [name for name in ("device", "batch_size", "dataset", "calibration")
               if len({str(r.get(name)) for r in records}) > 1]
    if len({r.get("calibration_size") for r in records if r.get("precision") == "int8"}) > 1:
        varying.append("calibration_size")  # among INT8 cases only: the others have none
    views = []
    for record in records:
        technique = [str(record["technique"])] if record.get("technique") not in (None, DEFAULT_TECHNIQUE) else []
        label = " ".join([str(record.get("model")), *technique, str(record.get("precision")), str(record.get("backend"))]
                         + [f"{LABEL_PREFIXES.get(name, '')}{record.get(name)}" for name in varying
                            if record.get(name) is not None])
        views.append(CaseView(record, label, number(record.get("speedup_vs_base")), number(record.get("speedup_vs_fp32"))))
    return tuple(views)


def measured(cases: Sequence[CaseView], *path: str) -> bool:
    """True when any case has a number at ``path``."""
    return any(case.get(*path) is not None for case in cases)


def phase_measured(cases: Sequence[CaseView], key: str) -> bool:
    """True when any phase summary of any case has a number under ``key``."""
    return any(number(summary.get(key)) is not None for case in cases for summary in case.resources().values())


def unavailable_reasons(cases: Sequence[CaseView], key: str) -> List[str]:
    """The distinct reasons telemetry gave for not measuring ``key`` (``unavailable`` maps)."""
    reasons: List[str] = []
    for case in cases:
        for summary in case.resources().values():
            missing = summary.get("unavailable")
            if isinstance(missing, Mapping) and key in missing and str(missing[key]) not in reasons:
                reasons.append(str(missing[key]))
    return reasons

"""Compare a candidate ptqcore run with a baseline run: what got worse, what got better, by how much.

Input is the JSON that ``pytest benchmarks/ --benchmark-json FILE`` writes (see
:mod:`ptqcore.records`): ``output["ptqcore"]`` holds ``schema_version`` and one record per case,
skipped and failed cases included; each benchmark entry's ``extra_info`` names its case and kind,
and the ``latency`` entry keeps the raw per-round samples in ``stats.data`` when the run used
``--benchmark-save-data``. Runs are read through :mod:`ptqcore.results.runfile`, which refuses a file whose
copies of a figure disagree.

Cases are matched by :data:`KEY_FIELDS` (model, precision, backend, device, batch size, data set,
calibration method and size), never by machine, so runs of two JetPack versions compare case by case. Each
metric of :data:`METRICS` that both runs measured is judged against
:class:`~ptqcore.options.thresholds.CompareLimits`:

* latency p50 / p90 / p99: a regression when the candidate is slower by more than
  ``latency_factor`` **and** a two-sided Mann-Whitney U test on the raw samples gives
  p < ``p_value`` (asv's rule) with the candidate's samples shifted towards slower (a faster
  distribution with a longer tail is not a significant slowdown). Without raw samples on both
  sides (or fewer than :data:`MIN_SAMPLES`), the factor alone decides and the row says
  ``no samples``.
* top-1 accuracy: a regression when it drops by more than ``accuracy_pp`` percentage points.
* size, build and export time, energy per inference: a regression when larger by more than their
  factor.

Improvements are the mirror image (better by more than the same factor or points, and significant
for latency), so swapping the two runs turns each regression into an improvement. A case that
fails in the candidate but did not fail in the baseline is a regression too. Cases added, removed,
newly skipped, not run and fixed are listed but are not regressions.

Any input that cannot be compared raises :class:`CompareError` with a one-line message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.environment import VOLATILE_KEYS
from ptqcore.measure.accuracy import drop_pp
from ptqcore.measure.significance import mann_whitney_u
from ptqcore.options.thresholds import CompareLimits
from ptqcore.records import KEY_FIELDS, record_key
from ptqcore.results.runfile import RunFile, RunFileError, load_run_files, run_file_from_document

#: Fewer raw samples than this on either side cannot be significant at p < 0.002: factor alone.
MIN_SAMPLES = 7
DEFAULT_LIMITS = CompareLimits()

REGRESSION, IMPROVEMENT, SAME, MISSING = "regression", "improvement", "same", "missing"


#: Runs that cannot be compared: unreadable, not ptqcore JSON, other schemas, inconsistent
#: (raised by the loader, :mod:`ptqcore.results.runfile`), or with no case in common (raised here).
CompareError = RunFileError


# -- metrics -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One figure of a record that is compared; lower is better unless ``higher_is_better``.

    ``kind`` is ``latency`` (factor and significance), ``factor`` or ``points`` (absolute
    difference in percentage points of a fraction); ``limit`` names its
    :class:`~ptqcore.options.thresholds.CompareLimits` field.
    """

    name: str
    path: Tuple[str, ...]
    kind: str
    limit: str
    unit: str
    higher_is_better: bool = False


METRICS: Tuple[Metric, ...] = (
    Metric("latency p50", ("latency_ms", "p50"), "latency", "latency_factor", "ms"),
    Metric("latency p90", ("latency_ms", "p90"), "latency", "latency_factor", "ms"),
    Metric("latency p99", ("latency_ms", "p99"), "latency", "latency_factor", "ms"),
    Metric("top1", ("top1",), "points", "accuracy_pp", "%", higher_is_better=True),
    Metric("size", ("size_bytes",), "factor", "size_factor", "B"),
    Metric("build", ("build_s",), "factor", "build_factor", "s"),
    Metric("export", ("export_s",), "factor", "build_factor", "s"),
    Metric("energy", ("energy_j_per_inference",), "factor", "energy_factor", "J"),
)


# -- runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseResult:
    """One case of one run: its record's status and metric values, and its raw latency samples (s)."""

    key: tuple
    case: str
    status: str
    problems: Tuple[str, ...]
    skip_reason: Optional[str]
    values: Mapping[str, Optional[float]]
    samples: Optional[Tuple[float, ...]] = None

    @property
    def ran(self) -> bool:
        return self.status in ("passed", "failed")


@dataclass(frozen=True)
class Run:
    """A loaded run: its cases by key (in file order) and its environment as flat ``key: text``."""

    source: str
    schema_version: int
    cases: Mapping[tuple, CaseResult]
    environment: Mapping[str, str] = field(default_factory=dict)
    #: what a summary must say about the file (:attr:`ptqcore.results.runfile.RunFile.notes`)
    notes: Tuple[str, ...] = ()


def load_run(path) -> Run:
    """Read and validate one run (raises :class:`CompareError`)."""
    return load_runs([path])[0]


def load_runs(paths: Sequence, allow_incomplete: bool = False) -> List[Run]:
    """Read and validate runs that are to be compared with each other, through the one loader
    (:func:`ptqcore.results.runfile.load_run_files`: schema versions agree and are known, copies agree,
    and each run completed unless ``allow_incomplete``)."""
    return [run_from_file(run_file) for run_file in load_run_files(paths, allow_incomplete)]


def run_from_document(document: Mapping, source: str = "<run>") -> Run:
    """A :class:`Run` from a parsed pytest-benchmark document (raises :class:`CompareError`)."""
    return run_from_file(run_file_from_document(document, source))


def run_from_file(run_file: RunFile) -> Run:
    """The comparable view of a loaded run: cases by key, metric values, raw latency samples."""
    samples = {case: entry.samples_s for case, entry in run_file.entries_of("latency").items()
               if entry.samples_s is not None}
    cases: Dict[tuple, CaseResult] = {}
    for number, record in enumerate(run_file.records, start=1):
        result = _case_result(record, f"{run_file.source}: record #{number}", samples)
        if result.key in cases:
            raise CompareError(f"{run_file.source} has two records of the case {result.case} (model, precision,"
                               " backend, device, batch size, data set, calibration method and size)",
                               "pass the JSON of one pytest run")
        cases[result.key] = result
    return Run(run_file.source, run_file.schema_version, cases, _environment(run_file.machine_info), run_file.notes)


def _case_result(record: Mapping, where: str, samples: Mapping[str, Tuple[float, ...]]) -> CaseResult:
    values = {metric.name: _number(record, metric.path, f"{where} ({record['case']})") for metric in METRICS}
    problems = record.get("problems") or []
    return CaseResult(
        key=record_key(record),
        case=str(record["case"]),
        status=record["status"],
        problems=tuple(str(problem) for problem in problems),
        skip_reason=record.get("skip_reason"),
        values=values,
        samples=samples.get(str(record["case"])),
    )


def _number(record: Mapping, path: Tuple[str, ...], where: str) -> Optional[float]:
    value = record
    for name in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CompareError(f"{where}: {'.'.join(path)} = {value!r} is not a number", "re-run the benchmarks")
    return float(value)


def _environment(machine_info: Mapping) -> Dict[str, str]:
    """Python version and ``machine_info["ptqcore"]`` flattened to ``dotted.key: text``, clocks left out."""
    flat = {"python": str(machine_info.get("python_version", "unknown"))}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in VOLATILE_KEYS:
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value if isinstance(value, str) else json.dumps(value)

    walk("", machine_info.get("ptqcore") or {})
    return flat


# -- comparison ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """The verdict on one metric of one case.

    ``change`` is candidate / baseline for factor and latency metrics and candidate - baseline in
    percentage points for ``points`` metrics; ``p_value`` is set when raw samples were compared.
    """

    case: str
    metric: str
    unit: str
    baseline: Optional[float]
    candidate: Optional[float]
    change: Optional[float]
    verdict: str
    p_value: Optional[float] = None
    note: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Comparison:
    """A candidate run judged against a baseline run (see the module docstring)."""

    baseline: str
    candidate: str
    limits: CompareLimits
    rows: Tuple[Row, ...]
    added: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    newly_failing: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    newly_skipped: Tuple[Tuple[str, str], ...] = ()
    not_run: Tuple[str, ...] = ()
    fixed: Tuple[str, ...] = ()
    environment_changes: Tuple[Tuple[str, str, str], ...] = ()
    #: the runs' notes (an incomplete run accepted, completeness not recorded)
    notes: Tuple[str, ...] = ()

    def rows_with(self, verdict: str) -> Tuple[Row, ...]:
        return tuple(row for row in self.rows if row.verdict == verdict)

    @property
    def regressed(self) -> bool:
        """True when any metric regressed or any case newly fails: the exit code is then 1."""
        return bool(self.newly_failing or self.rows_with(REGRESSION))

    def as_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "regressed": self.regressed,
            "regressions": [row.as_dict() for row in self.rows_with(REGRESSION)],
            "improvements": [row.as_dict() for row in self.rows_with(IMPROVEMENT)],
            "newly_failing": [{"case": case, "problems": list(problems)} for case, problems in self.newly_failing],
            "newly_skipped": [{"case": case, "reason": reason} for case, reason in self.newly_skipped],
            "added": list(self.added),
            "removed": list(self.removed),
            "not_run": list(self.not_run),
            "fixed": list(self.fixed),
            "environment_changes": [
                {"key": key, "baseline": old, "candidate": new} for key, old, new in self.environment_changes
            ],
            "rows": [row.as_dict() for row in self.rows],
            "notes": list(self.notes),
        }


def compare_runs(baseline: Run, candidate: Run, limits: CompareLimits = DEFAULT_LIMITS) -> Comparison:
    """Judge every case both runs share (raises :class:`CompareError` when they share none)."""
    common = [key for key in candidate.cases if key in baseline.cases]
    if not common:
        raise CompareError(
            f"{baseline.source} ({_describe(baseline)}) and {candidate.source} ({_describe(candidate)})"
            " have no case in common",
            "compare runs of the same models, precisions, backends, devices, batch sizes and data set",
        )
    rows: List[Row] = []
    newly_failing, newly_skipped, not_run, fixed = [], [], [], []
    for key in common:
        old, new = baseline.cases[key], candidate.cases[key]
        if new.status == "failed" and old.status != "failed":
            newly_failing.append((new.case, new.problems))
        elif old.status == "failed" and new.status == "passed":
            fixed.append(new.case)
        if new.status == "skipped" and old.status != "skipped":
            newly_skipped.append((new.case, new.skip_reason or "no reason given"))
        elif new.status in ("not run", "incomplete") and old.ran:
            not_run.append(new.case if new.status == "not run" else f"{new.case} (incomplete)")
        if old.ran and new.ran:
            rows.extend(_case_rows(old, new, limits))
    return Comparison(
        baseline=baseline.source,
        candidate=candidate.source,
        limits=limits,
        rows=tuple(rows),
        added=tuple(_label(r) for key, r in candidate.cases.items() if key not in baseline.cases),
        removed=tuple(_label(r) for key, r in baseline.cases.items() if key not in candidate.cases),
        newly_failing=tuple(newly_failing),
        newly_skipped=tuple(newly_skipped),
        not_run=tuple(not_run),
        fixed=tuple(fixed),
        environment_changes=tuple(
            (key, baseline.environment.get(key, "unknown"), candidate.environment.get(key, "unknown"))
            for key in sorted(set(baseline.environment) | set(candidate.environment))
            if baseline.environment.get(key, "unknown") != candidate.environment.get(key, "unknown")
        ),
        notes=baseline.notes + candidate.notes,
    )


def _describe(run: Run) -> str:
    models = sorted({str(result.key[0]) for result in run.cases.values()})
    return f"{len(run.cases)} case(s) of {', '.join(models) or 'no model'}"


def _label(result: CaseResult) -> str:
    dataset = result.key[KEY_FIELDS.index("dataset")]
    return f"{result.case} ({dataset})"


def _case_rows(old: CaseResult, new: CaseResult, limits: CompareLimits) -> List[Row]:
    rows = []
    latency_test = _latency_test(old, new)
    for metric in METRICS:
        before, after = old.values[metric.name], new.values[metric.name]
        if before is None and after is None:
            continue
        if before is None or after is None:
            where = "baseline" if before is None else "candidate"
            rows.append(Row(new.case, metric.name, metric.unit, before, after, None, MISSING, note=f"not in {where}"))
            continue
        limit = getattr(limits, metric.limit)
        if metric.kind == "points":
            change = -drop_pp(before, after)  # percentage points gained (measure.accuracy: the one drop formula)
            gain = change if metric.higher_is_better else -change
            verdict = REGRESSION if -gain > limit else IMPROVEMENT if gain > limit else SAME
            rows.append(Row(new.case, metric.name, metric.unit, before, after, change, verdict))
            continue
        worse, better = _ratio(after, before), _ratio(before, after)
        if metric.higher_is_better:
            worse, better = better, worse
        verdict = REGRESSION if worse > limit else IMPROVEMENT if better > limit else SAME
        p_value, note = None, ""
        if metric.kind == "latency":
            p_value, shift, note = latency_test
            if verdict != SAME and p_value is not None:
                if not p_value < limits.p_value:
                    verdict, note = SAME, f"not significant (p={p_value:.2g})"
                elif shift != (1 if verdict == REGRESSION else -1):
                    verdict, note = SAME, f"samples shifted the other way (p={p_value:.2g})"
        rows.append(
            Row(new.case, metric.name, metric.unit, before, after, _ratio(after, before), verdict, p_value, note)
        )
    return rows


def _latency_test(old: CaseResult, new: CaseResult) -> Tuple[Optional[float], int, str]:
    """Mann-Whitney U on the raw samples: (p-value, shift, note); shift is +1 when the candidate's
    samples tend to be slower, -1 faster, 0 neither. (None, 0, why) when they cannot be tested."""
    if old.samples is None or new.samples is None:
        return None, 0, "no samples"
    if min(len(old.samples), len(new.samples)) < MIN_SAMPLES:
        return None, 0, f"no samples (too few: {len(old.samples)} and {len(new.samples)})"
    test = mann_whitney_u(old.samples, new.samples)
    middle = len(old.samples) * len(new.samples) / 2.0
    shift = (test.u < middle) - (test.u > middle)
    return test.p_value, shift, f"p={test.p_value:.2g}"


def _ratio(numerator: float, denominator: float) -> float:
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else 1.0

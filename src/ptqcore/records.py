"""One result record per case, kept for every case: passed, failed or skipped.

The records are what later tools (comparison across versions, reports) read. They are written
into the pytest-benchmark JSON twice: each benchmark entry's ``extra_info`` holds its case's
record, and ``output["ptqcore"]["records"]`` lists all records, including the cases that were
skipped or failed and so have no benchmark entry.

Schema (version :data:`SCHEMA_VERSION`): the case fields (``case``, ``model``, ``precision``,
``backend``, ``device``, ``batch_size``, ``calibration`` and ``calibration_size``, the last two for
INT8 only, and ``technique``: ``ptq`` unless a pruned model or a student made the case, see
:mod:`ptqcore.models.technique_models` for the fields that technique runs add), ``dataset``, ``status`` (``passed`` when every test of the case that ran passed,
``failed``, ``skipped`` at collection, ``not run`` when no test of the case was selected,
``incomplete`` when a selected test of the case never finished: the run was interrupted or stopped
early, and ``tests_not_finished`` names those tests),
``problems`` (one line per failed check), ``skip_reason``, and the figures: ``export_s``
(phase 1, timed once per model and shared by its precisions' records), ``build_s`` (phase 2;
both medians over rounds, with ``*_rounds``), ``size_bytes``, ``size_bytes_base``,
``size_reduction``, ``top1``, ``top5``, ``top1_base``, ``accuracy_drop_pp``, ``agreement_top1``, ``latency_ms`` (``p50``, ``p90``, ``p99``, ``mean``, ``std``, ``n``, ``min``,
``max``, ``cv``), with ``--ptq-profile-layers`` ``layer_profile`` (the runtime's per-layer times: totals per
category and op type, the top layers, the profiled total against the latency p50, the full table's
file) and on INT8 records ``layer_changes`` and ``int8_slowdown`` (:mod:`ptqcore.study.layer_compare`), ``first_inference_ms``, ``throughput_ips``, ``speedup_vs_fp32`` (the FP32 case of
the same model, backend, device and batch size: p50 / this p50) and ``speedup_vs_base`` (the same
with the PyTorch base on the same device; never across devices); INT8 records add how they were
quantized (``int8_recipe``, ``activation_type``, ``weight_type``, ``per_channel``,
``reduce_range``, ``cpu_isa``) and the drop split in two parts that add up to
``accuracy_drop_pp``: ``accuracy_drop_quantization_pp`` (the fake-quant reference run of the Q/DQ
file, ``top1_reference``, vs the FP32 reference) and ``accuracy_drop_kernel_pp`` (the backend vs
that reference run; ``agreement_reference`` is their top-1 agreement), ``ranges`` (what the
calibration ranges clipped: ``method``, ``tensors``, ``clipped``, ``observed_range``, the graph
outputs and marked tensors kept at their observed range, and ``most_clipped``), ``sensitivity`` where it was
computed (:mod:`ptqcore.study.sensitivity`); ``int8-mixed`` records add ``float_layers``,
``float_macs_share``, ``mixed_search`` and ``mixed_note`` (:mod:`ptqcore.study.mixed`); with telemetry, ``resources`` (one
summary per phase: ``export``, ``calibration``, ``build`` from the last round of each phase,
``idle`` and ``inference`` from the latency window), ``energy_j_per_inference`` and ``energy``
(where power is measured), ``stability`` and ``machine_state``. A figure that was not measured
is ``None``, never 0.

:data:`RECORD_FIELDS` declares every field with its JSON type: the plugin writes records
(:class:`RecordBook`, serialized only by :mod:`ptqcore.plugin`), and :mod:`ptqcore.results.runfile`, the one
loader that compare, report and ``scripts/accept_tensorrt.py`` use, checks them against it. Each
benchmark entry's ``extra_info`` names its case and its :data:`ENTRY_KINDS` ``kind``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.case import DEFAULT_CALIBRATION_SIZE, DEFAULT_TECHNIQUE, QUANTIZED_PRECISION_NAMES, Case, Precision

#: 2: the run's ``session`` section (:func:`session_summary`) and the ``incomplete`` status.
SCHEMA_VERSION = 2

#: What makes two records the same case in two runs (compare matches cases by these).
KEY_FIELDS = ("model", "precision", "backend", "device", "batch_size", "technique", "dataset", "calibration",
              "calibration_size")
#: A record's ``status``.
STATUSES = ("passed", "failed", "skipped", "not run", "incomplete")
#: What a benchmark entry measured (``extra_info["kind"]``), by the benchmark file that writes it.
ENTRY_KINDS = ("compression", "latency", "harness_overhead", "telemetry_overhead", "calibration_speed",
               "int8_layouts", "calibration_agreement")
#: The ``measurement`` text each kind's entries start with: how files written before ``kind`` are read.
_MEASUREMENT_PREFIXES = (
    ("compression round", "compression"),
    ("latency", "latency"),
    ("ptqcore latency interleaved with a bare", "harness_overhead"),
    ("ptqcore latency with telemetry", "telemetry_overhead"),
    ("ptqcore one-pass entropy", "calibration_speed"),
    ("ONNX Runtime INT8 layouts", "int8_layouts"),
    ("ONNX Runtime's own calibrator", "calibration_agreement"),
)


def kind_of_measurement(measurement: str) -> str:
    """The :data:`ENTRY_KINDS` name of an entry written before entries carried ``kind`` ("" if none)."""
    return next((kind for prefix, kind in _MEASUREMENT_PREFIXES if measurement.startswith(prefix)), "")


_NUMBER, _INT, _TEXT, _FLAG, _LIST, _OBJECT = (float,), (int,), (str,), (bool,), (list,), (dict,)
#: Every field a record may hold and its JSON type(s) (``None`` is always allowed: not measured).
#: A backend may add fields of its own; those are kept but not checked.
RECORD_FIELDS = {
    # identity and outcome
    "schema_version": _INT, "case": _TEXT, "model": _TEXT, "precision": _TEXT, "backend": _TEXT, "device": _TEXT,
    "batch_size": _INT, "calibration": _TEXT, "calibration_size": _INT, "dataset": _TEXT, "status": _TEXT,
    "skip_reason": _TEXT, "problems": _LIST, "limits": _OBJECT, "tests_not_finished": _LIST,
    # compression technique (ptqcore.models.technique_models): ptq, prune<L> or kd_<student>, and what it did;
    # the accuracy reference of every technique case is the original model's base (teacher_case)
    "technique": _TEXT, "sparsity": _NUMBER, "size_bytes_compressed": _INT, "size_reduction_compressed": _NUMBER,
    "compression_time_s": _NUMBER, "compression_reused": _FLAG, "accuracy_drop_technique_pp": _NUMBER,
    "teacher_case": _TEXT,
    # compression
    "export_s": _NUMBER, "build_s": _NUMBER, "calibration_s": _NUMBER, "export_s_rounds": _LIST,
    "build_s_rounds": _LIST, "calibration_s_rounds": _LIST,
    # size and accuracy
    "size_bytes": _INT, "size_bytes_base": _INT, "size_reduction": _NUMBER, "top1": _NUMBER, "top5": _NUMBER,
    "top1_base": _NUMBER, "accuracy_drop_pp": _NUMBER, "agreement_top1": _NUMBER, "eval_images": _INT,
    "reference": _TEXT, "artifact_sha256": _TEXT, "artifact_reused": _FLAG, "artifact_path": _TEXT,
    # INT8: how it was quantized, and the drop split against the fake-quant reference
    "int8_recipe": _TEXT, "activation_type": _TEXT, "weight_type": _TEXT, "per_channel": _FLAG,
    "reduce_range": _FLAG, "int8_strategy": _TEXT, "cpu_isa": _TEXT, "ort_providers": _LIST, "top1_reference": _NUMBER,
    "agreement_reference": _NUMBER, "accuracy_drop_quantization_pp": _NUMBER, "accuracy_drop_kernel_pp": _NUMBER,
    # INT8: what the calibration ranges clipped (ptqcore.build.calibration.clipping_summary)
    "ranges": _OBJECT,
    # INT8: layers ranked by the error their quantization adds (ptqcore.study.sensitivity); int8-mixed: the layers
    # kept in float, their share of the MACs, the search that chose them (ptqcore.study.mixed)
    "sensitivity": _LIST, "float_layers": _LIST, "float_macs_share": _NUMBER, "mixed_search": _OBJECT,
    "mixed_note": _TEXT,
    # latency
    "latency_ms": _OBJECT, "throughput_ips": _NUMBER, "first_inference_ms": _NUMBER, "latency_rounds": _INT,
    "speedup_vs_fp32": _NUMBER, "speedup_vs_base": _NUMBER, "gpu_compute_ms": _OBJECT,
    # resources, energy and the machine while measuring
    "resources": _OBJECT, "energy_j_per_inference": _NUMBER, "energy": _OBJECT, "stability": _OBJECT,
    "machine_state": _OBJECT, "machine_load": _OBJECT,
    # per-layer profile (--ptq-profile-layers; ptqcore.measure.layer_profile.summary), and for INT8 against its float
    # twin: per layer group (ptqcore.study.layer_compare.layer_changes) and, where INT8 is not faster, the causes
    "layer_profile": _OBJECT, "layer_changes": _OBJECT, "int8_slowdown": _OBJECT,
    # TensorRT engines
    "engine_path": _TEXT, "engine_build": _OBJECT, "layers": _INT, "layers_by_precision": _OBJECT,
    "reformat_layers": _INT, "reformat_layers_from_qdq": _INT, "detailed": _FLAG,
    "cuda_graph": _FLAG, "cuda_graph_reason": _TEXT, "engine_input_shape": _OBJECT,
}

FIGURES = (
    "export_s",
    "build_s",
    "size_bytes",
    "size_bytes_base",
    "size_reduction",
    "top1",
    "top5",
    "top1_base",
    "accuracy_drop_pp",
    "agreement_top1",
    "latency_ms",
    "throughput_ips",
    "speedup_vs_fp32",
    "speedup_vs_base",
)

#: What a case is compared with for each speed-up, and the fields that must match.
SPEEDUP_REFERENCES = {
    "speedup_vs_fp32": ("fp32", ("model", "technique", "backend", "device", "batch_size", "dataset")),
    "speedup_vs_base": ("base", ("model", "technique", "device", "batch_size", "dataset")),
}


def latency_p50(record: Mapping) -> Optional[float]:
    """The record's latency median (ms), or None where it has none (or a non-positive one)."""
    latency = record.get("latency_ms")
    value = latency.get("p50") if isinstance(latency, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return None
    return float(value)


def record_key(record: Mapping) -> tuple:
    """What matches a record to the same case in another run: its :data:`KEY_FIELDS` values."""
    return tuple(record.get(name) for name in KEY_FIELDS)


class RecordError(ValueError):
    """A record that does not fit the schema (:data:`RECORD_FIELDS`): the message names the field."""


_JSON_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true/false", list: "a list", dict: "an object"}


def _of_type(value, types: Tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, (int, float)) and (int in types or float in types):
        return True  # counts may come back as 3.0 from other JSON writers: a number is what matters
    return isinstance(value, types)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Record(dict):
    """One case's record: the JSON object itself (a dict: written as is, equal to the dict it was
    read from) with its identity and figures read through typed properties.

    Made in two places only: :meth:`RecordBook.as_list` (the writer: every figure goes in through
    :meth:`RecordBook.update`) and :meth:`checked` (the loader, :mod:`ptqcore.results.runfile`, which
    compare, report, ``scripts/accept_tensorrt.py`` and the tests read runs with)."""

    @classmethod
    def checked(cls, value, where: str) -> "Record":
        """``value`` as a :class:`Record` once it fits :data:`RECORD_FIELDS`; else a :class:`RecordError`
        that names ``where``, the case and the field."""
        if not isinstance(value, dict):
            raise RecordError(f"{where} is not an object")
        missing = [name for name in ("case", "status", *KEY_FIELDS) if name not in value]
        if missing:
            raise RecordError(f"{where} lacks {', '.join(missing)}")
        odd = [name for name in KEY_FIELDS if not isinstance(value[name], (str, int, float, type(None)))]
        if odd:
            raise RecordError(f"{where} has a non-scalar {', '.join(odd)}")
        if value["status"] not in STATUSES:
            raise RecordError(f"{where} ({value['case']}) has unknown status {value['status']!r}"
                              f" (status must be one of {', '.join(STATUSES)})")
        for name, types in RECORD_FIELDS.items():
            figure = value.get(name)
            if figure is not None and not _of_type(figure, types):
                expected = " or ".join(_JSON_NAMES[t] for t in types)
                raise RecordError(f"{where} ({value['case']}): {name} = {_short(figure)} is not {expected}")
        return cls(value)

    @property
    def case_id(self) -> str:
        return str(self["case"])

    @property
    def precision(self) -> Precision:
        return Precision(self["precision"])

    @property
    def status(self) -> str:
        return str(self["status"])

    @property
    def key(self) -> tuple:
        """:func:`record_key`."""
        return record_key(self)

    @property
    def p50_ms(self) -> Optional[float]:
        """:func:`latency_p50`."""
        return latency_p50(self)

    def number(self, name: str) -> Optional[float]:
        """Figure ``name`` as a float, or None where it was not measured (never a bool)."""
        value = self.get(name)
        return None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)


def speedups(record: Mapping, records: Sequence[Mapping]) -> Dict[str, Optional[float]]:
    """``speedup_vs_fp32`` and ``speedup_vs_base`` of ``record`` among ``records`` (one run):
    the reference case's latency p50 / this case's p50, each None where either is missing.
    References are found only on the same device, so no speed-up divides a GPU by a CPU."""
    out: Dict[str, Optional[float]] = {}
    mine = latency_p50(record)
    for name, (precision, keys) in SPEEDUP_REFERENCES.items():
        reference = next((latency_p50(r) for r in records if r.get("precision") == precision
                          and all(r.get(k) == record.get(k) for k in keys) and latency_p50(r) is not None), None)
        out[name] = None if mine is None or reference is None else reference / mine
    return out


def with_calibration_size(records: Sequence, options: Optional[Mapping]) -> list:
    """``records`` with ``calibration_size`` in every record (a dict) that lacks it: runs written before
    sizes could be swept calibrated every INT8 case on their option ``calibration_size`` (else the
    default); other precisions have none. Records are copied, never changed in place."""
    size = options.get("calibration_size") if isinstance(options, Mapping) else None
    size = size if isinstance(size, int) and not isinstance(size, bool) else DEFAULT_CALIBRATION_SIZE
    return [record if not isinstance(record, dict) or "calibration_size" in record
            else {**record, "calibration_size": size if record.get("precision") in QUANTIZED_PRECISION_NAMES else None}
            for record in records]


def with_speedups(records: Sequence) -> list:
    """``records`` with ``speedup_vs_fp32`` and ``speedup_vs_base`` (:func:`speedups`) in every record
    (a dict) that lacks them: runs written before they were recorded. Records are copied, never
    changed in place; a record's own figures are kept."""
    dicts = [record for record in records if isinstance(record, dict)]
    return [record if not isinstance(record, dict) or all(name in record for name in SPEEDUP_REFERENCES)
            else {**speedups(record, dicts), **record} for record in records]


def with_technique(records: Sequence) -> list:
    """``records`` with ``technique`` in every record (a dict) that lacks it: runs written before the
    technique axis measured PTQ alone (``ptq``). Records are copied, never changed in place."""
    return [record if not isinstance(record, dict) or "technique" in record
            else {**record, "technique": DEFAULT_TECHNIQUE} for record in records]


@dataclass
class CaseRecord:
    case: Case
    dataset: str
    status: str = "not run"
    skip_reason: Optional[str] = None
    problems: List[str] = field(default_factory=list)
    figures: Dict[str, object] = field(default_factory=lambda: {name: None for name in FIGURES})
    #: test id -> its name, for every selected test of the case, and the ids that finished
    expected: Dict[str, str] = field(default_factory=dict)
    finished: set = field(default_factory=set)

    @property
    def unfinished(self) -> List[str]:
        """Names of the case's selected tests that never finished (sorted)."""
        return sorted(name for test, name in self.expected.items() if test not in self.finished)

    @property
    def final_status(self) -> str:
        """``status``, except that a case with an unfinished test is ``incomplete`` unless it failed
        (a failure is a result; the unfinished tests are named either way)."""
        if self.unfinished and self.status in ("passed", "not run"):
            return "incomplete"
        return self.status

    def as_dict(self) -> "Record":
        """The record: identity and outcome (the book's own, never overridden by a figure of the
        same name), then the figures."""
        owned = {
            "schema_version": SCHEMA_VERSION,
            **self.case.fields(),
            "dataset": self.dataset,
            "status": self.final_status,
            "skip_reason": self.skip_reason,
            "problems": list(self.problems),
            "tests_not_finished": self.unfinished,
        }
        return Record({**owned, **{k: v for k, v in self.figures.items() if k not in owned}})


class RecordBook:
    """All records of a session, by case id, in the order the cases were collected."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._records: Dict[str, CaseRecord] = {}

    def record(self, case: Case) -> CaseRecord:
        if case.id not in self._records:
            self._records[case.id] = CaseRecord(case, self.dataset)
        return self._records[case.id]

    def get(self, case_id: str) -> Optional[CaseRecord]:
        return self._records.get(case_id)

    def update(self, case: Case, **figures) -> None:
        self.record(case).figures.update(figures)

    def skipped(self, case: Case, reason: str) -> None:
        record = self.record(case)
        record.status, record.skip_reason = "skipped", reason

    def passed(self, case: Case) -> None:
        record = self.record(case)
        if record.status == "not run":
            record.status = "passed"

    def failed(self, case: Case, problem: str) -> None:
        record = self.record(case)
        record.status = "failed"
        record.problems.append(problem)

    def expect(self, case: Case, test_id: str, name: str) -> None:
        """The selected test ``test_id`` (named ``name``) belongs to ``case``: until it finishes, the
        case is not complete."""
        self.record(case).expected[test_id] = name

    def finish(self, case: Case, test_id: str) -> None:
        """The test ``test_id`` of ``case`` ran to its end (passed, failed or skipped)."""
        self.record(case).finished.add(test_id)

    def session_summary(self, exit_status: Optional[int], interrupted: bool) -> dict:
        """The run file's ``session`` section: how the pytest session ended (``exit_status``: pytest's
        exit code when known, ``interrupted`` by Ctrl-C or a signal), how many tests were selected
        and finished, cases per final status, and ``complete``: not interrupted, exit status 0
        (all passed) or 1 (some failed), and every selected test finished."""
        records = list(self._records.values())
        counts = {status: sum(r.final_status == status for r in records) for status in STATUSES}
        selected = sum(len(r.expected) for r in records)
        finished = sum(len(set(r.expected) & r.finished) for r in records)
        complete = not interrupted and exit_status in (0, 1) and finished == selected
        return {"complete": complete, "exit_status": exit_status, "interrupted": interrupted,
                "tests_selected": selected, "tests_finished": finished, "cases": len(records),
                "cases_by_status": counts}

    def as_list(self) -> List[Record]:
        """Every record as a dict, with the speed-ups that need the other records of the run."""
        records = [record.as_dict() for record in self._records.values()]
        for record in records:
            record.update(speedups(record, records))
        return records

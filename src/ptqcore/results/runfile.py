"""The one reader of ptqcore run files: the JSON that ``pytest benchmarks/ --benchmark-json FILE`` writes.

``ptqcore compare``, ``ptqcore report`` and ``scripts/accept_tensorrt.py`` read runs only through
:func:`load_run_files` / :func:`load_run_file`; the plugin is the only writer (see
:mod:`ptqcore.records` for the schema). Loading checks, with a one-line :class:`RunFileError` for
anything unusable (never a traceback):

* the file: readable, UTF-8, JSON, not truncated, not nested deeper than :data:`MAX_DEPTH`,
  pytest-benchmark's layout with a ``ptqcore`` section of a known ``schema_version``;
* each record: an object with the identity fields, a known status, one record per case, and every
  field of :data:`~ptqcore.records.RECORD_FIELDS` it has of its declared JSON type;
* each benchmark entry: its ``kind`` (:data:`~ptqcore.records.ENTRY_KINDS`; files written before
  ``kind`` existed are read by their ``measurement`` text), its raw samples numbers;
* the session (schema 2 on): the ``session`` section says whether the run completed; an
  incomplete run (interrupted, stopped early, a selected test that never finished: a record
  ``incomplete``) is refused unless the caller allows it (``--allow-incomplete``), and the section
  must agree with the records (their statuses and counts);
* the copies: a figure the JSON holds twice must agree, and a record field that one copy has and
  the other lacks is a disagreement too. Every entry's ``extra_info`` repeats its
  case's record, and a latency entry's raw samples (``stats.data``, or pytest-benchmark's
  ``stats.median`` / ``stats.rounds`` without them) are the samples the record's ``latency_ms``
  was computed from: an edited or damaged copy is an error, so that no comparison can take
  percentiles from one copy and samples from another.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ptqcore.case import Case
from ptqcore.errors import PtqError, error_line
from ptqcore.measure.stats import percentile
from ptqcore.records import (
    ENTRY_KINDS,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    STATUSES,
    Record,
    RecordError,
    kind_of_measurement,
    with_calibration_size,
    with_speedups,
    with_technique,
)

#: Schema versions of ``output["ptqcore"]`` this ptqcore can read (1: before the ``session`` section).
SUPPORTED_SCHEMAS = (1, SCHEMA_VERSION)
#: The first schema whose runs say whether they completed.
SESSION_SCHEMA = 2
#: No benchmark run is nested deeper than this; deeper documents are refused, never recursed into.
MAX_DEPTH = 100
#: Relative difference allowed between two copies of one figure (JSON round-trips floats exactly;
#: this only absorbs the different summation order of a median recomputed from samples).
COPY_TOLERANCE = 1e-9
_PASS_RUN = "pass the file pytest --benchmark-json wrote"
_RERUN = "re-run the benchmarks with this ptqcore"


class RunFileError(PtqError):
    """A run file that cannot be used: unreadable, not ptqcore JSON, another schema, inconsistent."""


@dataclass(frozen=True)
class Entry:
    """One pytest-benchmark entry of a case: its kind, raw samples (s) when kept, and summary."""

    kind: str
    case: str
    samples_s: Optional[Tuple[float, ...]]
    median_s: Optional[float]
    rounds: Optional[int]
    extra_info: Mapping


@dataclass(frozen=True)
class RunFile:
    """A validated run: its records (one per case, file order), benchmark entries and machine info."""

    source: str
    schema_version: int
    records: Tuple[Mapping, ...]
    entries: Tuple[Entry, ...]
    machine_info: Mapping
    #: the ``session`` section (None for schema 1), and lines a summary must show (an incomplete
    #: run accepted, completeness not recorded)
    session: Optional[Mapping] = None
    notes: Tuple[str, ...] = ()

    def entries_of(self, kind: str) -> Dict[str, Entry]:
        """The entries of one kind by case id."""
        return {entry.case: entry for entry in self.entries if entry.kind == kind}


def load_run_file(path, allow_incomplete: bool = False) -> RunFile:
    """Read and validate one run (raises :class:`RunFileError`)."""
    return load_run_files([path], allow_incomplete)[0]


def load_run_files(paths: Sequence, allow_incomplete: bool = False) -> List[RunFile]:
    """Read and validate runs that are used together (compared, reported side by side).

    Their schema versions must agree and be known; agreement is checked first, so two runs of
    different schemas are reported as such rather than as one unknown schema. An incomplete run is
    refused unless ``allow_incomplete`` (then its :attr:`RunFile.notes` say so).
    """
    documents = [(str(path), read_document(Path(path))) for path in paths]
    versions = [(source, schema_version(document, source)) for source, document in documents]
    if len({version for _, version in versions}) > 1:
        listed = ", ".join(f"{Path(source).name} has {version}" for source, version in versions)
        raise RunFileError(f"the runs have different ptqcore schema versions ({listed})",
                           "use runs written with the same schema: re-run the older one with this ptqcore")
    return [run_file_from_document(document, source, allow_incomplete) for source, document in documents]


def read_document(path: Path) -> dict:
    """The pytest-benchmark JSON object in ``path`` (raises :class:`RunFileError` for any unusable file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(f"{path} does not exist", "check the path (pytest --benchmark-json writes it)") from None
    except IsADirectoryError:
        raise RunFileError(f"{path} is a directory", _PASS_RUN) from None
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is not JSON (not UTF-8 text)", _PASS_RUN) from None
    except OSError as err:
        raise RunFileError(f"{path} cannot be read ({err.strerror})", "check the file's permissions") from None
    if not text.strip():
        raise RunFileError(f"{path} is empty", "re-run the benchmarks: the run that wrote it did not finish")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if _cut_off(err):
            raise RunFileError(
                f"{path} is truncated JSON (it ends at line {err.lineno} in the middle of a value)",
                "re-run the benchmarks: the run that wrote it was cut off",
            ) from None
        where = f"{err.msg} at line {err.lineno} column {err.colno}"
        raise RunFileError(f"{path} is not valid JSON ({where})", _PASS_RUN) from None
    except (RecursionError, ValueError) as err:  # too deep for the parser; an integer beyond Python's digit limit
        deep = isinstance(err, RecursionError)
        raise RunFileError(f"{path} " + ("is nested too deeply" if deep else f"is not usable JSON ({error_line(err)})"),
                           _PASS_RUN) from None
    problem = _structure_problem(document)
    if problem:
        raise RunFileError(f"{path} {problem}", _PASS_RUN)
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise RunFileError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' list)",
                           "pass the file written by pytest benchmarks/ --benchmark-json FILE")
    return document


def _structure_problem(document) -> Optional[str]:
    """Why a parsed document cannot be walked or printed (None when it can): nesting deeper than
    :data:`MAX_DEPTH`, or a string or key that is not UTF-8 (a lone ``\\ud800`` escape)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"is nested deeper than {MAX_DEPTH} levels"
        texts = [value] if isinstance(value, str) else list(value) if isinstance(value, dict) else []
        if any(text.encode("utf-8", "surrogatepass") != text.encode("utf-8", "replace") for text in texts):
            return "has a string with an unpaired surrogate escape (\\ud800-\\udfff)"
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((item, depth + 1) for item in inner if isinstance(item, (dict, list, str)))
    return None


def _cut_off(err: json.JSONDecodeError) -> bool:
    """True when the text is valid JSON so far and merely ends too early (a truncated file)."""
    if err.msg.startswith("Unterminated string"):
        return True
    if not err.msg.startswith("Expecting"):
        return False
    # what follows the error position is empty or the start of a number or a literal
    return re.fullmatch(r"\s*([-+.eE0-9]*|t(r(u)?)?|f(a(l(s)?)?)?|n(u(l)?)?)\s*", err.doc[err.pos :]) is not None


def schema_version(document: Mapping, source: str) -> int:
    """``document["ptqcore"]["schema_version"]`` (raises :class:`RunFileError` when absent or not a whole number)."""
    section = document.get("ptqcore")
    if not isinstance(section, dict) or "schema_version" not in section:
        raise RunFileError(
            f"{source} has no ptqcore schema_version (pytest-benchmark JSON, but not written by the ptqcore suite)",
            "run the suite with its plugin: pytest benchmarks/ --benchmark-json FILE",
        )
    version = section["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunFileError(f"{source} has an unknown ptqcore schema_version {version!r}",
                           f"this ptqcore reads schema {_supported()}: re-run the benchmarks with it")
    return version


def run_file_from_document(document: Mapping, source: str = "<run>", allow_incomplete: bool = False) -> RunFile:
    """A :class:`RunFile` from a parsed pytest-benchmark document (raises :class:`RunFileError`;
    an incomplete run unless ``allow_incomplete``)."""
    version = schema_version(document, source)
    if version not in SUPPORTED_SCHEMAS:
        raise RunFileError(
            f"{source} has ptqcore schema_version {version}, which this ptqcore (schema {_supported()}) does not know",
            "upgrade ptqcore (pip install -U ptqcore) or use the ptqcore that wrote the file",
        )
    records = document["ptqcore"].get("records")
    if not isinstance(records, list):
        raise RunFileError(f"{source} has no ptqcore records list", _RERUN)
    as_written = {str(record.get("case")): record for record in records if isinstance(record, dict)}
    records = with_calibration_size(records, document["ptqcore"].get("options"))  # runs before sweeps lack it
    records = with_technique(records)  # runs before the technique axis lack it
    records = with_speedups(records)  # runs before speed-ups were recorded lack them
    by_case: Dict[str, Mapping] = {}
    checked = []
    for number, record in enumerate(records, start=1):
        try:
            record = Record.checked(record, f"{source}: record #{number}")
        except RecordError as err:
            raise RunFileError(str(err), _RERUN) from None
        checked.append(record)
        if version >= SESSION_SCHEMA:
            _check_case_id(record, f"{source}: record #{number}")
        if str(record["case"]) in by_case:
            raise RunFileError(f"{source} has two records of case {record['case']}", "pass the JSON of one pytest run")
        by_case[str(record["case"])] = record
    entries = tuple(_entry(entry, source) for entry in document.get("benchmarks", []))
    orphans = [entry.case for entry in entries if entry.case and entry.case not in by_case]
    if orphans and version >= SESSION_SCHEMA:  # the plugin writes a record for every case it times
        raise RunFileError(f"{source}: the benchmark entry of {orphans[0]} has no record", _DAMAGED)
    for entry in entries:  # the copies as written (the fill-ins above are the loader's, not the file's)
        _check_copies(entry, as_written.get(entry.case) if entry.case in by_case else None, source,
                      whole=version >= SESSION_SCHEMA)
    session = document["ptqcore"].get("session")
    notes = _check_session(session, version, records, source, allow_incomplete)
    machine = document.get("machine_info")
    return RunFile(source, version, tuple(checked), tuple(e for e in entries if e.case),
                   machine if isinstance(machine, dict) else {}, session if version >= SESSION_SCHEMA else None,
                   notes)


_DAMAGED = f"the file was edited or damaged: {_RERUN}"
_SESSION_COUNTS = ("tests_selected", "tests_finished", "cases")


def _check_session(session, version: int, records: Sequence[Mapping], source: str,
                   allow_incomplete: bool) -> Tuple[str, ...]:
    """The notes of a run's completeness (module docstring); raises :class:`RunFileError` for a
    session section that is missing, malformed or contradicts the records, and for an incomplete
    run unless ``allow_incomplete``."""
    name = Path(source).name
    if version < SESSION_SCHEMA:
        return (f"{name}: schema {version} run: whether it completed was not recorded",)
    if not isinstance(session, dict):
        raise RunFileError(f"{source} has no ptqcore session section (schema {version} runs always have one)",
                           _DAMAGED)
    bad = [key for key in ("complete", "interrupted") if not isinstance(session.get(key), bool)]
    bad += [key for key in _SESSION_COUNTS if not _count(session.get(key))]
    exit_status = session.get("exit_status")
    if exit_status is not None and not _count(exit_status):
        bad.append("exit_status")
    by_status = session.get("cases_by_status")
    if not isinstance(by_status, dict) or set(by_status) != set(STATUSES) or not all(map(_count, by_status.values())):
        bad.append("cases_by_status")
    if bad:
        raise RunFileError(f"{source}: the session section's {', '.join(bad)} is missing or malformed", _DAMAGED)
    counted = {status: sum(record["status"] == status for record in records) for status in STATUSES}
    if counted != by_status or session["cases"] != len(records) or session["tests_finished"] > session["tests_selected"]:
        raise RunFileError(f"{source}: the session section's counts do not match the records", _DAMAGED)
    unfinished = [record for record in records if record["status"] != "failed" and record.get("tests_not_finished")]
    if unfinished and unfinished[0]["status"] != "incomplete":
        raise RunFileError(f"{source}: {unfinished[0]['case']} is {unfinished[0]['status']} but names tests that"
                           " did not finish", _DAMAGED)
    really_complete = (not session["interrupted"] and exit_status in (0, 1) and not counted["incomplete"]
                       and session["tests_finished"] == session["tests_selected"])
    if session["complete"] and not really_complete:
        raise RunFileError(f"{source}: the session says complete, but {_why_incomplete(session, counted)}", _DAMAGED)
    if really_complete and not session["complete"]:
        raise RunFileError(f"{source}: the session says incomplete, but its figures say it completed", _DAMAGED)
    if really_complete:
        return ()
    why = _why_incomplete(session, counted)
    if not allow_incomplete:
        raise RunFileError(f"{source} is an incomplete run ({why})",
                           "re-run the benchmarks to the end, or pass --allow-incomplete to use what it measured")
    return (f"{name}: incomplete run accepted (--allow-incomplete): {why}",)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _why_incomplete(session: Mapping, counted: Mapping[str, int]) -> str:
    parts = []
    if session["interrupted"]:
        parts.append("interrupted")
    if session.get("exit_status") not in (0, 1):
        parts.append(f"pytest exit status {session.get('exit_status')}")
    missing = session["tests_selected"] - session["tests_finished"]
    if missing:
        parts.append(f"{missing} of {session['tests_selected']} selected tests did not finish")
    if counted["incomplete"]:
        parts.append(f"{counted['incomplete']} case(s) incomplete")
    return ", ".join(parts) or "the session says it did not complete"


def _supported() -> str:
    return ", ".join(map(str, SUPPORTED_SCHEMAS))


def _check_case_id(record: Mapping, where: str) -> None:
    """The record's ``case`` id must be the id of its identity fields (the plugin writes both from one
    :class:`~ptqcore.case.Case`): compare matches cases by the fields and labels them by the id."""
    try:
        expected = Case.from_fields(record).id
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{where} ({record['case']}): its identity fields name no case ({error_line(err)})",
                           _DAMAGED) from None
    if expected != record["case"]:
        raise RunFileError(f"{where}: case {record['case']} does not match its fields (they name {expected})",
                           _DAMAGED)


def _entry(entry, source: str) -> Entry:
    if not isinstance(entry, dict):
        raise RunFileError(f"{source}: a benchmark entry is not an object", "pass pytest-benchmark JSON")
    extra = entry.get("extra_info") if isinstance(entry.get("extra_info"), dict) else {}
    case = str(extra.get("case", "")) if "case" in extra else ""
    kind = extra.get("kind")
    if kind is None:  # written before entries carried their kind
        kind = kind_of_measurement(str(extra.get("measurement", "")))
    if case and kind not in ENTRY_KINDS:
        raise RunFileError(f"{source}: the benchmark entry of {case} has unknown kind {kind!r}",
                           f"kind must be one of {', '.join(ENTRY_KINDS)}: {_RERUN}")
    stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
    data = stats.get("data")
    if data is not None and not (isinstance(data, list) and all(_finite(v) for v in data)):
        raise RunFileError(f"{source}: the raw samples of {case or entry.get('name')} are not numbers", _RERUN)
    rounds = stats.get("rounds")
    return Entry(
        kind=str(kind), case=case,
        samples_s=tuple(float(v) for v in data) if data is not None else None,
        median_s=float(stats["median"]) if _finite(stats.get("median")) else None,
        rounds=rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None,
        extra_info=extra,
    )


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_copies(entry: Entry, record: Optional[Mapping], source: str, whole: bool = True) -> None:
    """Raise when a figure stored twice disagrees (see the module docstring). ``whole``: the entry
    holds the whole record (the plugin writes it so from schema 2 on), so a field in one copy only
    is a disagreement too; schema 1 files are checked on the fields both copies have."""
    if record is None:
        return
    where = f"{source}: {entry.case}"
    for name in RECORD_FIELDS:
        if whole and (name in entry.extra_info) != (name in record):
            holder, other = ("benchmark entry", "record") if name in entry.extra_info else ("record", "benchmark entry")
            raise RunFileError(f"{where}: the {holder} has {name} but the case's {other} lacks it", _DAMAGED)
        if name in record and name in entry.extra_info and not _same(entry.extra_info[name], record[name]):
            raise RunFileError(f"{where}: the benchmark entry's {name} differs from the case's record", _DAMAGED)
    latency = record.get("latency_ms")
    if entry.kind != "latency" or not isinstance(latency, dict):
        return
    n = latency.get("n")
    counted = len(entry.samples_s) if entry.samples_s is not None else entry.rounds
    if counted is not None and n is not None and counted != n:
        raise RunFileError(f"{where}: the record's latency_ms.n is {n} but the benchmark entry has {counted} rounds",
                           f"the file was edited or damaged: {_RERUN}")
    median_ms = (percentile(sorted(entry.samples_s), 50) if entry.samples_s
                 else entry.median_s if entry.median_s is not None else None)
    if median_ms is not None and _finite(latency.get("p50")) and not _close(median_ms * 1000.0, latency["p50"]):
        raise RunFileError(
            f"{where}: the record's latency p50 {latency['p50']:.6g} ms is not the median of the benchmark's"
            f" samples ({median_ms * 1000.0:.6g} ms)", f"the file was edited or damaged: {_RERUN}")


def _same(a, b) -> bool:
    if _finite(a) and _finite(b):
        return _close(float(a), float(b))
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= COPY_TOLERANCE * max(abs(a), abs(b), 1e-12)

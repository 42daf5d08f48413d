"""Quality thresholds: how much accuracy a precision may lose and how much smaller it must be.

A thresholds file is TOML::

    [defaults.int8]                 # per precision: fp32, fp16, int8, int8-mixed
    max_accuracy_drop_pp = 2.0      # top-1 drop vs the reference, percentage points
    min_size_reduction = 3.0        # base size / artifact size
    max_kernel_drop_pp = 1.0        # int8 only: top-1 the backend's kernels lose against the
                                    # fake-quant reference run of the same Q/DQ file

    [techniques.prune.int8]         # a compression technique (a kind: prune, kd; or a name: prune80,
    max_accuracy_drop_pp = 5.0      # kd_mobilenet_v3_small) x precision; a name's table wins over its kind's

    [datasets.digits]
    min_base_top1 = 0.90            # the base model itself must reach this top-1

    [[overrides]]                   # later overrides win; unset fields are inherited
    models = "mobilenet_v3_*"       # glob over model names
    precision = "int8"              # optional, default every precision
    backend = "onnxruntime"         # optional, default every backend
    technique = "prune*"            # optional glob over technique names, default every technique
    max_accuracy_drop_pp = 4.0
    reason = "why this model is allowed more"   # required

    [compare]                       # `ptqcore compare`: when a candidate run is worse than its baseline
    latency_factor = 1.10           # slower by more than this factor (and significant, below)
    p_value = 0.002                 # Mann-Whitney U on the raw latency samples, two-sided
    accuracy_pp = 0.5               # top-1 lower by more than this many percentage points
    size_factor = 1.10              # artifact larger by more than this factor
    build_factor = 1.5              # export or build slower by more than this factor
    energy_factor = 1.10            # more energy per inference by more than this factor

The file's values are merged over :data:`DEFAULTS`. A case of a technique other than ``ptq`` starts
from its precision's limits with its drop limit raised by the technique's own budget
(:data:`TECHNIQUE_DROP_BUDGET_PP`, against the original model), then takes its kind's and its
name's ``[techniques]`` tables, then the overrides. Files without ``[techniques]`` mean what they
always meant. Any mistake (unknown key, wrong type, an
override without a reason) is a :class:`ThresholdsError` that names the file, the place and the fix.
"""

from __future__ import annotations

import fnmatch
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

from ptqcore.case import COMPRESSED_PRECISION_NAMES, DEFAULT_TECHNIQUE
from ptqcore.errors import ThresholdsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.8-3.10 (JetPack 5 and 6)
    import tomli as tomllib

LIMIT_KEYS = ("max_accuracy_drop_pp", "min_size_reduction", "max_kernel_drop_pp")
COMPARE_KEYS = ("latency_factor", "p_value", "accuracy_pp", "size_factor", "build_factor", "energy_factor")
PRECISIONS = COMPRESSED_PRECISION_NAMES


@dataclass(frozen=True)
class Limits:
    """The limits one case is held to, and where they came from (``reason``)."""

    max_accuracy_drop_pp: Optional[float] = None
    min_size_reduction: Optional[float] = None
    #: INT8 only: how many pp of top-1 the backend's kernels may lose against the reference run
    #: of the same Q/DQ file with graph optimizations off (fake quantization, no ISA effects).
    max_kernel_drop_pp: Optional[float] = None
    reason: str = "ptqcore defaults"


#: FP32 should lose nothing and be about the base's size; FP16 and INT8 as the issue suggests.
DEFAULTS: Dict[str, Limits] = {
    "fp32": Limits(max_accuracy_drop_pp=0.1, min_size_reduction=0.9),
    "fp16": Limits(max_accuracy_drop_pp=0.5, min_size_reduction=1.8),
    "int8": Limits(max_accuracy_drop_pp=2.0, min_size_reduction=3.0, max_kernel_drop_pp=1.0),
    # the INT8 drop limit it repairs; no larger than FP16 (1.8x), else FP16 would be the better repair
    "int8-mixed": Limits(max_accuracy_drop_pp=2.0, min_size_reduction=1.8, max_kernel_drop_pp=1.0),
}
DEFAULT_BASE_TOP1 = {"digits": 0.90}
#: What a technique may lose on top of its precision's limit, in pp against the original model (whose
#: base is every technique case's accuracy reference). Pruning at 50-80% with a short fine-tuning and
#: a student a tenth of its teacher's size are expected to cost some accuracy; the sister paper saw
#: drops of a few points. A starting point, not a measured guarantee: set yours in [techniques.*].
TECHNIQUE_DROP_BUDGET_PP = {"prune": 2.0, "kd": 3.0}


def _technique_kind(technique: str) -> str:
    """``prune`` for ``prune80``, ``kd`` for ``kd_mobilenet_v3_small``, else the name itself."""
    if technique.startswith("kd_"):
        return "kd"
    return "prune" if technique.startswith("prune") and technique[5:].isdigit() else technique


def _finite(value) -> bool:
    """True for an int or float that is neither NaN nor infinite (bools are not numbers here)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class CompareLimits:
    """When ``ptqcore compare`` calls a metric of a candidate run a regression (see :mod:`ptqcore.results.compare`).

    Factors are candidate / baseline ratios (> 1 is worse) and must be >= 1; ``p_value`` is the
    significance level of the Mann-Whitney U test on latency samples (asv's 0.002);
    ``accuracy_pp`` is a top-1 drop in percentage points. Build and export times are noisy, hence
    their larger factor.
    """

    latency_factor: float = 1.10
    p_value: float = 0.002
    accuracy_pp: float = 0.5
    size_factor: float = 1.10
    build_factor: float = 1.5
    energy_factor: float = 1.10

    def __post_init__(self) -> None:
        for name in COMPARE_KEYS:
            problem = compare_value_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")


def compare_value_problem(name: str, value) -> Optional[str]:
    """Why ``value`` cannot be the compare limit ``name`` (None when it can)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number"
    if not _finite(value):
        return f"{value!r} is not a finite number"
    if name == "p_value" and not 0 < value < 1:
        return f"{value!r} is not a probability strictly between 0 and 1"
    if name == "accuracy_pp" and value < 0:
        return f"{value!r} is negative"
    if name.endswith("_factor") and value < 1:
        return f"{value!r} is below 1 (a factor is candidate / baseline, e.g. 1.10)"
    return None


@dataclass(frozen=True)
class Override:
    models: str
    precision: str
    backend: str
    limits: Mapping[str, float]
    reason: str
    technique: str = "*"


@dataclass(frozen=True)
class Thresholds:
    """Per-precision defaults, per-data-set floors for the base model, and per-model overrides."""

    defaults: Mapping[str, Limits]
    base_top1: Mapping[str, float]
    overrides: tuple = ()
    source: str = "built-in defaults"
    compare: CompareLimits = CompareLimits()
    #: ``{technique kind or name: {precision: limits}}`` from ``[techniques.*.*]`` tables
    techniques: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)

    def limits_for(self, model: str, precision: str, backend: str, technique: str = DEFAULT_TECHNIQUE) -> Limits:
        limits = self.defaults.get(precision, Limits())
        if technique != DEFAULT_TECHNIQUE:
            kind = _technique_kind(technique)
            budget = TECHNIQUE_DROP_BUDGET_PP.get(kind, 0.0)
            if limits.max_accuracy_drop_pp is not None:
                limits = replace(limits, max_accuracy_drop_pp=limits.max_accuracy_drop_pp + budget,
                                 reason=f"{limits.reason} + {budget} pp for {kind}")
            for name in dict.fromkeys((kind, technique)):
                values = self.techniques.get(name, {}).get(precision)
                if values:
                    limits = replace(limits, reason=f"[techniques.{name}.{precision}] in {self.source}", **values)
        for override in self.overrides:
            if (
                fnmatch.fnmatchcase(model, override.models)
                and override.precision in ("*", precision)
                and override.backend in ("*", backend)
                and fnmatch.fnmatchcase(technique, override.technique)
            ):
                limits = replace(limits, reason=override.reason, **override.limits)
        return limits

    def min_base_top1(self, dataset: str) -> Optional[float]:
        return self.base_top1.get(dataset)


def default_thresholds() -> Thresholds:
    return Thresholds(dict(DEFAULTS), dict(DEFAULT_BASE_TOP1))


def load_thresholds(path: Optional[Path], option: str = "--ptq-thresholds") -> Thresholds:
    """The built-in defaults, with the file at ``path`` (if any) merged over them.

    ``option`` names the command-line option that gave ``path``, for the error message.
    """
    if path is None:
        return default_thresholds()
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ThresholdsError(f"thresholds file {path} does not exist", f"check the {option} path") from None
    except OSError as err:
        raise ThresholdsError(
            f"thresholds file {path} cannot be read ({err.strerror or err})",
            f"check the {option} path and its permissions",
        ) from None
    except UnicodeDecodeError:
        raise ThresholdsError(f"thresholds file {path} is not UTF-8 text", "save it as UTF-8 TOML") from None
    except RecursionError:
        raise ThresholdsError(
            f"thresholds file {path} is nested too deeply", "write the flat tables of the thresholds format"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ThresholdsError(f"thresholds file {path} is not readable TOML ({err})", "fix the TOML syntax") from None
    return parse_thresholds(document, str(path))


def parse_thresholds(document: Mapping, source: str = "<thresholds>") -> Thresholds:
    """Validate a parsed TOML document and merge it over the defaults (see the module docstring)."""

    def fail(where: str, problem: str, fix: str) -> None:
        raise ThresholdsError(f"{source}: {where}: {problem}", fix)

    unknown = set(document) - {"defaults", "datasets", "overrides", "compare", "techniques"}
    if unknown:
        fail(
            "top level",
            f"unknown table(s) {sorted(unknown)}",
            "use [defaults.PRECISION], [techniques.TECHNIQUE.PRECISION], [datasets.NAME], [[overrides]], [compare]",
        )
    defaults = dict(DEFAULTS)
    for precision, table in _table(document.get("defaults", {}), "defaults", fail).items():
        if precision not in PRECISIONS:
            fail(f"[defaults.{precision}]", "unknown precision", f"use one of {', '.join(PRECISIONS)}")
        values = _limit_values(_table(table, f"defaults.{precision}", fail), f"[defaults.{precision}]", fail, allow=())
        defaults[precision] = replace(defaults.get(precision, Limits()), reason=f"defaults in {source}", **values)
    base_top1 = dict(DEFAULT_BASE_TOP1)
    for dataset, table in _table(document.get("datasets", {}), "datasets", fail).items():
        table = _table(table, f"datasets.{dataset}", fail)
        extra = set(table) - {"min_base_top1"}
        if extra:
            fail(f"[datasets.{dataset}]", f"unknown key(s) {sorted(extra)}", "the only key is min_base_top1")
        if "min_base_top1" in table:
            base_top1[dataset] = _fraction(table["min_base_top1"], f"[datasets.{dataset}] min_base_top1", fail)
    overrides: List[Override] = []
    raw_overrides = document.get("overrides", [])
    if not isinstance(raw_overrides, list):
        fail("overrides", "must be an array of tables", "write each one as [[overrides]]")
    for number, raw in enumerate(raw_overrides, start=1):
        where = f"override #{number}"
        raw = _table(raw, where, fail)
        reason = raw.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            fail(where, "has no reason", 'add reason = "why this model is held to other limits"')
        models = raw.get("models")
        if not isinstance(models, str) or not models:
            fail(where, "has no models glob", 'add models = "name or glob"')
        precision = raw.get("precision", "*")
        if precision != "*" and precision not in PRECISIONS:
            fail(where, f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
        backend = raw.get("backend", "*")
        if not isinstance(backend, str):
            fail(where, "backend must be a string", 'write backend = "onnxruntime"')
        technique = raw.get("technique", "*")
        if not isinstance(technique, str) or not technique:
            fail(where, "technique must be a non-empty string", 'write technique = "prune*"')
        values = _limit_values(raw, where, fail, allow=("reason", "models", "precision", "backend", "technique"))
        if not values:
            fail(where, "sets no limit", f"set one of {', '.join(LIMIT_KEYS)}")
        overrides.append(Override(models, precision, backend, values, reason.strip(), technique))
    return Thresholds(defaults, base_top1, tuple(overrides), source, _compare_limits(document, fail),
                      _technique_limits(document, fail))


def _technique_limits(document: Mapping, fail) -> dict:
    """``[techniques.TECHNIQUE.PRECISION]`` tables: a kind (prune, kd) or a technique name (prune80)."""
    out: Dict[str, Dict[str, dict]] = {}
    for technique, table in _table(document.get("techniques", {}), "techniques", fail).items():
        kind = _technique_kind(technique)
        if kind not in TECHNIQUE_DROP_BUDGET_PP:
            fail(f"[techniques.{technique}]", "unknown technique",
                 "use a kind (prune, kd) or a name (prune80, kd_mobilenet_v3_small)")
        for precision, values in _table(table, f"techniques.{technique}", fail).items():
            where = f"[techniques.{technique}.{precision}]"
            if precision not in PRECISIONS:
                fail(where, "unknown precision", f"use one of {', '.join(PRECISIONS)}")
            out.setdefault(technique, {})[precision] = _limit_values(_table(values, where, fail), where, fail, allow=())
    return out


def _compare_limits(document: Mapping, fail) -> CompareLimits:
    table = _table(document.get("compare", {}), "compare", fail)
    extra = set(table) - set(COMPARE_KEYS)
    if extra:
        fail("[compare]", f"unknown key(s) {sorted(extra)}", f"use {', '.join(COMPARE_KEYS)}")
    for key, value in table.items():
        problem = compare_value_problem(key, value)
        if problem:
            fail(f"[compare] {key}", problem, f"write e.g. {key} = {getattr(CompareLimits(), key)}")
    return CompareLimits(**{key: float(value) for key, value in table.items()})


def check_names(
    thresholds: Thresholds, models: Iterable[str], backends: Iterable[str], datasets: Iterable[str]
) -> List[str]:
    """Check the names a thresholds file uses against the names this run knows.

    ``models``: every model name worth matching (the run's models and the registry's);
    ``backends``: every backend name; ``datasets``: every data-set name
    (:data:`ptqcore.models.data.DATASETS`). Raises :class:`ThresholdsError` for an override's unknown
    backend or an unknown ``[datasets.NAME]`` (they can never apply: a typo); returns one warning
    line per override whose ``models`` glob matches none of ``models`` (it may be meant for
    another run's models).
    """
    models, backends, datasets = list(models), set(backends), set(datasets)
    for number, override in enumerate(thresholds.overrides, start=1):
        if override.backend != "*" and override.backend not in backends:
            raise ThresholdsError(
                f"{thresholds.source}: override #{number}: unknown backend {override.backend!r}",
                f"use one of {', '.join(sorted(backends))}, or leave backend out for every backend",
            )
    for dataset in thresholds.base_top1:
        if dataset not in datasets:
            raise ThresholdsError(
                f"{thresholds.source}: [datasets.{dataset}]: unknown data set",
                f"use one of {', '.join(sorted(datasets))}",
            )
    return [
        f"{thresholds.source}: override #{number} (models = {override.models!r}) matches no model"
        f" ({', '.join(models) or 'none known'}); it is ignored"
        for number, override in enumerate(thresholds.overrides, start=1)
        if not any(fnmatch.fnmatchcase(model, override.models) for model in models)
    ]


def _table(value, where: str, fail) -> Mapping:
    if not isinstance(value, Mapping):
        fail(where, "must be a table", "see the thresholds file format in the README")
    return value


def _limit_values(table: Mapping, where: str, fail, allow) -> dict:
    extra = set(table) - set(LIMIT_KEYS) - set(allow)
    if extra:
        fail(where, f"unknown key(s) {sorted(extra)}", f"use {', '.join(LIMIT_KEYS)}")
    values = {}
    for key in LIMIT_KEYS:
        if key in table:
            value = table[key]
            if not _finite(value) or value < 0:
                fail(where, f"{key} = {value!r} is not a finite non-negative number", f"write e.g. {key} = 2.0")
            values[key] = float(value)
    return values


def _fraction(value, where: str, fail) -> float:
    if not _finite(value) or not 0 <= value <= 1:
        fail(where, f"{value!r} is not a fraction between 0 and 1", "write e.g. min_base_top1 = 0.9")
    return float(value)

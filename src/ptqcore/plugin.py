"""The pytest plugin: options, the case matrix as parameters, skips at collection, records in the JSON.

Registered by the project's root ``conftest.py`` (``pytest_plugins = ["ptqcore.plugin"]``) or with
``pytest -p ptqcore.plugin``. A test that takes the ``case`` argument is parametrized over the
matrix; ``@pytest.mark.ptq_cases(select="compressed")`` (or ``"base"``) narrows it. Cases that
cannot run here are skipped at collection with their reason. Option values are checked when the
command line is parsed, so a typo is a usage error before anything is collected.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import socket
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from .backends import BACKEND_NAMES
from .case import BASE_BACKEND, DEFAULT_CALIBRATION, PRECISION_NAMES, Case, Precision
from .cpu_isa import INT8_RECIPE_CHOICES
from .data import DATASETS
from .errors import PtqError
from .export import EXPORTERS
from .json_output import benchmark_json_takes_a_file, check_writable, json_output_path
from .models import looks_like_model_file, resolve_model_names
from .quantize import CALIBRATIONS
from .records import SCHEMA_VERSION
from .store import default_cache_dir
from .suite import Suite, SuiteOptions
from .thresholds import check_names, load_thresholds

SUITE_KEY = pytest.StashKey[Suite]()
STARTED_KEY = pytest.StashKey[float]()
SELECTIONS = ("all", "compressed", "base", "int8")


# -- option types: each raises ArgumentTypeError with the valid values ------------------------------
def _csv(text: str) -> list:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _choices(valid) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = _csv(text)
        bad = [item for item in items if item not in valid]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; valid: {', '.join(valid)}")
        return tuple(items)

    return parse


def _calibrations(text: str) -> tuple:
    """Calibration methods, or ``all`` for every one."""
    return tuple(CALIBRATIONS) if str(text).strip() == "all" else _choices(CALIBRATIONS)(text)


def _percentile(text: str) -> float:
    value = _positive_float(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{value} is above 100 (a percentile, e.g. 99.999)")
    return value


def _models(text: str) -> tuple:
    items = _csv(text)
    try:
        resolve_model_names(items)
    except PtqError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    for item in items:
        if looks_like_model_file(item) and not Path(item).expanduser().is_file():
            raise argparse.ArgumentTypeError(f"model file {item} does not exist")
    return tuple(items)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    return parse


def _ints_at_least(low: int) -> Callable[[str], tuple]:
    return lambda text: tuple(_int_at_least(low)(item) for item in _csv(text))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0")
    return value


def _three_floats(text: str) -> tuple:
    try:
        values = tuple(float(item) for item in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated values (R,G,B)")
    if not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be a finite number")
    return values


def _three_positive_floats(text: str) -> tuple:
    values = _three_floats(text)
    if not all(value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: a standard deviation must be > 0 (it divides the pixels)")
    return values


def _existing_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a directory")
    return path


def pytest_addoption(parser) -> None:
    group = parser.getgroup("ptqcore", "ptqcore: post-training quantization benchmarks")
    add = group.addoption
    add("--ptq-models", type=_models, default=("study",), metavar="LIST",
        help="models, presets (study, quick, tiny, all), globs ('mobilenet*'), torchvision names or"
        " .onnx/.pt files, comma-separated (default: study = the study's six)")
    add("--ptq-precisions", type=_choices(PRECISION_NAMES), default=PRECISION_NAMES, metavar="LIST",
        help=f"precisions to run: {', '.join(PRECISION_NAMES)} (default: all)")
    add("--ptq-backends", type=_choices(BACKEND_NAMES), default=("onnxruntime",), metavar="LIST",
        help=f"compression backends: {', '.join(BACKEND_NAMES)} (default: onnxruntime); base always runs on PyTorch")
    add("--ptq-batch-sizes", type=_ints_at_least(1), default=(1,), metavar="LIST", help="batch sizes to time (default: 1)")
    add("--ptq-dataset", choices=DATASETS, default="digits", help="data set (default: digits, offline)")
    add("--ptq-data-root", type=_existing_dir, default=None, metavar="DIR",
        help="folder of the data set (imagefolder, cifar100, flowers102)")
    add("--ptq-calibration-size", type=_int_at_least(1), default=128, metavar="N",
        help="calibration images for INT8 (default: 128, as the study)")
    add("--ptq-eval-size", type=_int_at_least(1), default=None, metavar="N",
        help="evaluation images (default: the whole held-out split, at most 2500)")
    add("--ptq-eval-batch-size", type=_int_at_least(1), default=16, metavar="N",
        help="batch size of the accuracy pass (default: 16)")
    add("--ptq-calibration", type=_calibrations, default=(DEFAULT_CALIBRATION,), metavar="LIST",
        help=f"INT8 calibration methods, one INT8 case each, all from one statistics pass: {', '.join(CALIBRATIONS)}"
        f" or all (default: {DEFAULT_CALIBRATION}, the study's: TensorRT's entropy calibrator)")
    add("--ptq-percentile", type=_percentile, default=99.999, metavar="P",
        help="the percentile of |x| the percentile method clips at (default: 99.999)")
    add("--ptq-int8-recipe", choices=INT8_RECIPE_CHOICES, default="auto",
        help="ONNX Runtime INT8 layout: auto (chosen for this CPU: u8s8 with VNNI, u8s8-reduce-range on x86"
        " without VNNI, s8s8 on ARM64), u8s8, s8s8 or u8s8-reduce-range (default: auto)")
    add("--ptq-cache-dir", type=Path, default=None, metavar="DIR",
        help=f"artifact cache (default: $PTQCORE_CACHE_DIR or {default_cache_dir()})")
    add("--ptq-thresholds", type=Path, default=None, metavar="FILE", help="TOML file of accuracy and size thresholds")
    add("--ptq-json-dir", type=Path, default=None, metavar="DIR",
        help="without --benchmark-json, write the run's JSON to DIR/<UTC time>-<host>.json (unlike"
        " --benchmark-autosave, the folder does not depend on the Python version)")
    add("--ptq-weights", default="auto", metavar="MODE",
        help="base weights: auto, train, head (the study's frozen ImageNet backbone + new head), imagenet,"
        " or a directory of <model>.pt state dicts (default: auto = train on digits, head elsewhere)")
    add("--ptq-train-epochs", type=_int_at_least(1), metavar="N", help="training epochs (default: 5 from scratch, 8 for a head)")
    add("--ptq-image-size", type=_int_at_least(8), default=None, metavar="PX",
        help="model input side (default: 32 on digits, 224 elsewhere)")
    add("--ptq-opset", type=_int_at_least(7), default=17, metavar="N", help="ONNX opset of phase 1 (default: 17)")
    add("--ptq-exporter", choices=EXPORTERS, default="legacy", help="torch ONNX exporter (default: legacy)")
    add("--ptq-compress-rounds", type=_int_at_least(1), default=3, metavar="N",
        help="timed compression rounds per case (default: 3, so that the default sweep stays within 5 minutes"
        " on a warm cache; the study used 5)")
    add("--ptq-compress-warmup", type=_int_at_least(0), default=1, metavar="N",
        help="untimed compression rounds first (default: 1, as the study)")
    add("--ptq-latency-min-rounds", type=_int_at_least(1), default=20, metavar="N",
        help="at least this many timed inferences (default: 20)")
    add("--ptq-latency-min-time", type=_positive_float, default=1.0, metavar="S",
        help="and at least this many seconds of them (default: 1.0)")
    add("--ptq-warmup-time", type=_positive_float, default=0.5, metavar="S",
        help="warm-up before timing, at least 10 calls (default: 0.5 s)")
    add("--ptq-threads", type=_int_at_least(0), default=0, metavar="N",
        help="intra-op threads for ONNX Runtime and PyTorch alike (default: 0 = the physical cores)")
    add("--ptq-trt-workspace", type=_int_at_least(1), default=None, metavar="MIB",
        help="TensorRT builder workspace limit (default: TensorRT's; a Jetson shares memory with the CPU)")
    add("--ptq-trt-int8", choices=("explicit", "implicit-entropy"), default="explicit",
        help="TensorRT INT8: explicit Q/DQ from ptqcore's calibration (default), or the study's implicit"
        " entropy calibrator (TensorRT < 11 only)")
    add("--ptq-trt-cuda-graph", action="store_true", default=False,
        help="replay TensorRT inference from a captured CUDA graph")
    add("--ptq-telemetry-interval", type=_positive_float, default=0.2, metavar="S",
        help="resource sampling interval (default: 0.2 s; jtop is held to >= 0.5 s)")
    add("--ptq-telemetry-samples", action="store_true", default=False,
        help="keep the raw timestamped telemetry samples of every phase in the records (for plots)")
    add("--ptq-no-telemetry", action="store_true", default=False,
        help="do not sample CPU / GPU / memory / power during compression and inference")
    add("--ptq-calibration-speed", action="store_true", default=False,
        help="also time ONNX Runtime's own MinMax and Entropy calibrators next to ptqcore's one-pass calibration"
        " (benchmarks/test_calibration_speed.py; ONNX Runtime's entropy takes minutes per model)")
    add("--ptq-int8-layouts", action="store_true", default=False,
        help="also build every ONNX Runtime INT8 layout per model and time them side by side"
        " (benchmarks/test_int8_layouts.py)")
    add("--ptq-seed", type=int, default=0, metavar="N", help="seed for splits and training (default: 0)")
    add("--ptq-model-input-size", type=_int_at_least(8), default=224, metavar="PX",
        help="input side of .onnx/.pt model files (default: 224)")
    add("--ptq-model-mean", type=_three_floats, default=(0.485, 0.456, 0.406), metavar="R,G,B",
        help="normalization mean of model files (default: ImageNet)")
    add("--ptq-model-std", type=_three_positive_floats, default=(0.229, 0.224, 0.225), metavar="R,G,B",
        help="normalization std of model files (default: ImageNet)")


def options_from_config(config) -> SuiteOptions:
    get = config.getoption
    return SuiteOptions(
        models=tuple(get("ptq_models")),
        precisions=tuple(Precision(p) for p in get("ptq_precisions")),
        backends=tuple(get("ptq_backends")),
        batch_sizes=tuple(get("ptq_batch_sizes")),
        dataset=get("ptq_dataset"),
        data_root=get("ptq_data_root"),
        calibration_size=get("ptq_calibration_size"),
        eval_size=get("ptq_eval_size"),
        eval_batch_size=get("ptq_eval_batch_size"),
        calibrations=tuple(get("ptq_calibration")),
        int8_recipe=get("ptq_int8_recipe"),
        percentile=get("ptq_percentile"),
        cache_dir=(get("ptq_cache_dir") or default_cache_dir()).expanduser(),
        weights=get("ptq_weights"),
        image_size=get("ptq_image_size"),
        opset=get("ptq_opset"),
        exporter=get("ptq_exporter"),
        compress_rounds=get("ptq_compress_rounds"),
        compress_warmup=get("ptq_compress_warmup"),
        latency_min_rounds=get("ptq_latency_min_rounds"),
        latency_min_seconds=get("ptq_latency_min_time"),
        warmup_seconds=get("ptq_warmup_time"),
        threads=get("ptq_threads"),
        seed=get("ptq_seed"),
        train_epochs=get("ptq_train_epochs"),
        trt_workspace_mib=get("ptq_trt_workspace"),
        trt_int8=get("ptq_trt_int8"),
        trt_cuda_graph=get("ptq_trt_cuda_graph"),
        telemetry=not get("ptq_no_telemetry"),
        telemetry_interval=get("ptq_telemetry_interval"),
        telemetry_samples=get("ptq_telemetry_samples"),
        file_input_size=get("ptq_model_input_size"),
        file_mean=tuple(get("ptq_model_mean")),
        file_std=tuple(get("ptq_model_std")),
    )


def _terminal_report(config) -> Callable[[str], None]:
    """Progress lines that reach the terminal even while pytest captures output."""

    def report(message: str) -> None:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if terminal is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                terminal.write_line(f"[ptqcore] {message}")
        else:
            terminal.write_line(f"[ptqcore] {message}")

    return report


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    """Runs before pytest-benchmark's own configure, so the JSON path set here is the one it uses."""
    config.stash[STARTED_KEY] = time.time()  # wall clock on purpose: compared with a file's mtime, not a duration
    json_dir = config.getoption("ptq_json_dir", None)
    if json_dir is not None and not config.getoption("benchmark_json", None):
        json_dir = json_dir.expanduser()
        try:
            json_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise pytest.UsageError(f"--ptq-json-dir {json_dir} cannot be created ({err.strerror}): choose another folder") from None
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = json_dir / f"{stamp}-{socket.gethostname()}.json"
        check_writable(target, "--ptq-json-dir")
        config.option.benchmark_json = open(target, "wb") if benchmark_json_takes_a_file() else target
    target = json_output_path(config)
    if target is not None and not hasattr(config.getoption("benchmark_json"), "write"):
        check_writable(target.expanduser(), "--benchmark-json")
    config.addinivalue_line(
        "markers", "ptq_cases(select='all'): parametrize the test's `case` argument over the ptqcore"
        " matrix; select 'compressed', 'base' or 'int8' to narrow it; opt_in='--ptq-OPTION' skips it unless"
        " that flag is given",
    )
    try:
        options = options_from_config(config)
        thresholds = load_thresholds(config.getoption("ptq_thresholds"))
        suite = Suite(options, thresholds, _terminal_report(config))
        suite.check_model_files()
        for warning in check_names(thresholds, set(suite.specs), BACKEND_NAMES + (BASE_BACKEND,), DATASETS):
            _terminal_report(config)(f"warning: {warning}")
    except PtqError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[SUITE_KEY] = suite


def suite_of(config) -> Suite:
    return config.stash[SUITE_KEY]


@pytest.fixture(scope="session")
def ptq_suite(request) -> Suite:
    """The session's :class:`~ptqcore.suite.Suite`: options, caches, records."""
    return suite_of(request.config)


def pytest_generate_tests(metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("ptq_cases")
    select = marker.kwargs.get("select", "all") if marker else "all"
    if select not in SELECTIONS:
        raise pytest.UsageError(f"ptq_cases(select={select!r}): use one of {', '.join(SELECTIONS)}")
    opt_in = marker.kwargs.get("opt_in") if marker else None
    opted_out = opt_in is not None and not metafunc.config.getoption(opt_in.lstrip("-").replace("-", "_"))
    suite = suite_of(metafunc.config)
    params = []
    for case, reason in suite.cases():
        if not _selected(case, select):
            continue
        marks = []
        suite.book.record(case)
        if reason:
            suite.book.skipped(case, reason)
            marks.append(pytest.mark.skip(reason=f"{case.id}: {reason}"))
        elif opted_out:  # this test only; the case's own record is untouched
            marks.append(pytest.mark.skip(reason=f"{metafunc.function.__name__} runs only with {opt_in}"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def _selected(case: Case, select: str) -> bool:
    """Whether ``case`` belongs to the ``ptq_cases(select=...)`` subset."""
    if select == "compressed":
        return case.precision.compressed
    if select == "base":
        return not case.precision.compressed
    if select == "int8":
        return case.precision is Precision.INT8
    return True


def pytest_collection_modifyitems(session, config, items) -> None:
    """Load the data set and check every model's output width against it before any case runs, so a
    missing data set or a mismatched model stops the run at once."""
    if SUITE_KEY not in config.stash or config.option.collectonly:
        return
    cases = [case for case in map(_case_of, items) if case is not None]
    if cases:
        try:
            suite_of(config).dataset(cases[0].model)
            suite_of(config).check_output_widths()
        except PtqError as err:
            raise pytest.UsageError(str(err)) from None


def _case_of(item) -> Optional[Case]:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("case") if callspec is not None else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    case = _case_of(item)
    if case is None or SUITE_KEY not in item.config.stash:
        return
    book = suite_of(item.config).book
    if report.when == "call" and report.passed:
        book.passed(case)
    if not report.failed:
        return
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, PtqError):
        report.longrepr = f"{item.nodeid}: {type(error).__name__}: {error}"
        line = str(error)
    elif call.excinfo is not None:
        line = " ".join(call.excinfo.exconly().split())
    else:
        line = "failed"
    book.failed(case, f"{item.originalname} ({call.when}): {line}")


def pytest_report_header(config):
    if SUITE_KEY not in config.stash:
        return None
    options = suite_of(config).options
    return (
        f"ptqcore: models {','.join(options.models)}; precisions {','.join(p.value for p in options.precisions)};"
        f" backends {','.join(options.backends)}; data {options.dataset}; cache {options.cache_dir}"
    )


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    if SUITE_KEY in config.stash:
        machine_info["ptqcore"] = _machine_info(config)


def _machine_info(config) -> dict:
    from .environment import collect_environment

    return {**suite_of(config).environment(), "environment": collect_environment()}


def _ptqcore_section(suite: Suite) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in suite.options.__dict__.items()},
        "records": suite.book.as_list(),
    }


def pytest_benchmark_update_json(config, benchmarks, output_json) -> None:
    """Give every benchmark entry its case's whole record, and list all records (skipped too)."""
    if SUITE_KEY not in config.stash:
        return
    suite = suite_of(config)
    section = _ptqcore_section(suite)
    records = {record["case"]: record for record in section["records"]}
    for entry in output_json.get("benchmarks", []):
        extra = entry.get("extra_info") or {}
        if isinstance(entry.get("params"), dict) and isinstance(entry["params"].get("case"), Case):
            entry["params"]["case"] = entry["params"]["case"].id  # else JSON says UNSERIALIZABLE[...]
        record = records.get(extra.get("case", ""))
        if record is not None:
            entry["extra_info"] = {**record, **extra}
    output_json["ptqcore"] = section


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    """Keep the records when pytest-benchmark wrote no JSON because no benchmark finished.

    pytest-benchmark skips writing when every benchmark failed or was skipped; the records of
    those cases (their failures and skip reasons) are then written in the same layout, with an
    empty ``benchmarks`` list, so that nothing a run learned is lost. Up to pytest-benchmark
    5.2 the option is a file it opened and closes once written: still open means not written.
    """
    config = session.config
    value = config.getoption("benchmark_json", None)
    if SUITE_KEY not in config.stash or not value:
        return
    if hasattr(value, "write"):
        if value.closed:
            return
    else:
        path = Path(value)
        if path.exists() and path.stat().st_mtime >= config.stash[STARTED_KEY]:
            return
    output = {"machine_info": {"ptqcore": _machine_info(config)}, "benchmarks": [],
              "ptqcore": _ptqcore_section(suite_of(config))}
    data = json.dumps(output, indent=2, default=str).encode()
    if hasattr(value, "write"):
        with value:
            value.write(data)
    else:
        Path(value).write_bytes(data)

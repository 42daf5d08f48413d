"""The pytest plugin: options, the case matrix as parameters, skips at collection, records in the JSON.

Registered by ``benchmarks/conftest.py`` (``pytest_plugins = ["ptqcore.plugin"]``) or with
``pytest -p ptqcore.plugin``. A test that takes the ``case`` argument is parametrized over the
matrix; ``@pytest.mark.ptq_cases(select="compressed")`` (or ``"base"``) narrows it. Cases that
cannot run here are skipped at collection with their reason. Option values are checked when the
command line is parsed, so a typo is a usage error before anything is collected.
"""

from __future__ import annotations

import datetime
import json
import socket
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from ptqcore.backends import ALL_BACKEND_NAMES
from ptqcore.case import Case, Precision
from ptqcore.errors import PtqError
from ptqcore.models.data import DATASETS
from ptqcore.options.suite_options import SuiteOptions, flags, options_from_values
from ptqcore.options.thresholds import check_names, load_thresholds
from ptqcore.records import SCHEMA_VERSION
from ptqcore.results.json_output import benchmark_json_takes_a_file, check_writable, json_output_path
from ptqcore.study.session import Study

SUITE_KEY = pytest.StashKey[Study]()
STARTED_KEY = pytest.StashKey[float]()
#: How the session ended, for the run file's ``session`` section: pytest's exit status (known from
#: ``pytest_sessionfinish`` on) and whether it was interrupted (Ctrl-C, SIGINT).
EXIT_STATUS_KEY = pytest.StashKey[int]()
INTERRUPTED_KEY = pytest.StashKey[bool]()
SELECTIONS = ("all", "compressed", "base", "int8", "quantized")


def pytest_addoption(parser) -> None:
    """The ``--ptq-*`` options: one per :class:`SuiteOptions` field with a flag (declared in
    :mod:`ptqcore.options.suite_options`), then the plugin's own (thresholds, JSON folder, opt-in benchmarks)."""
    group = parser.getgroup("ptqcore", "ptqcore: post-training quantization benchmarks")
    add = group.addoption
    for _, flag in flags():
        settings = {"action": flag.action} if flag.action else {"type": flag.parse, "metavar": flag.metavar}
        if flag.choices:
            settings = {"choices": flag.choices}
        add(flag.name, dest=flag.dest, default=None, help=flag.help, **settings)
    add("--ptq-thresholds", type=Path, default=None, metavar="FILE", help="TOML file of accuracy and size thresholds")
    add("--ptq-json-dir", type=Path, default=None, metavar="DIR",
        help="without --benchmark-json, write the run's JSON to DIR/<UTC time>-<host>.json (unlike"
        " --benchmark-autosave, the folder does not depend on the Python version)")
    add("--ptq-calibration-speed", action="store_true", default=False,
        help="also time ONNX Runtime's own MinMax and Entropy calibrators next to ptqcore's one-pass calibration"
        " (benchmarks/test_calibration_speed.py; ONNX Runtime's entropy takes minutes per model)")
    add("--ptq-calibration-agreement", action="store_true", default=False,
        help="also quantize each INT8 case from ONNX Runtime's own calibrator of its method and compare top-1"
        " (benchmarks/test_calibration_agreement.py; ONNX Runtime's entropy takes minutes per model)")
    add("--ptq-int8-layouts", action="store_true", default=False,
        help="also build every ONNX Runtime INT8 layout per model and time them side by side"
        " (benchmarks/test_int8_layouts.py)")


def options_from_config(config) -> SuiteOptions:
    return options_from_values(config.getoption)


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
    _INTERRUPTED[0] = False  # a new session (pytester runs several in one process)
    if not config.pluginmanager.has_plugin("ptqcore-session-end"):
        config.pluginmanager.register(SessionEnd(), "ptqcore-session-end")
    json_dir = config.getoption("ptq_json_dir", None)
    if json_dir is not None and not config.getoption("benchmark_json", None):
        json_dir = json_dir.expanduser()
        try:
            json_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise pytest.UsageError(f"--ptq-json-dir {json_dir} cannot be created ({err.strerror}); fix: choose another folder") from None
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = json_dir / f"{stamp}-{socket.gethostname()}.json"
        check_writable(target, "--ptq-json-dir")
        config.option.benchmark_json = open(target, "wb") if benchmark_json_takes_a_file() else target
    target = json_output_path(config)
    if target is not None and not hasattr(config.getoption("benchmark_json"), "write"):
        check_writable(target.expanduser(), "--benchmark-json")
    config.addinivalue_line("markers", "ptq_last: run after every other test of the session (it reads their figures)")
    config.addinivalue_line(
        "markers", "ptq_cases(select='all'): parametrize the test's `case` argument over the ptqcore"
        " matrix; select 'compressed', 'base', 'int8' or 'quantized' (int8 and int8-mixed) to narrow it; opt_in='--ptq-OPTION' skips it unless"
        " that flag is given",
    )
    try:
        options = options_from_config(config)
        thresholds = load_thresholds(config.getoption("ptq_thresholds"))
        suite = Study(options, thresholds, _terminal_report(config))
        if target is not None:  # --ptq-profile-layers tables travel beside the run's JSON, named relative to it
            json_path = target.expanduser().resolve()
            suite.layer_tables = (json_path.parent / f"{json_path.stem}.layers", json_path.parent)
        suite.check_inputs()
        for warning in check_names(thresholds, set(suite.specs), ALL_BACKEND_NAMES, DATASETS):
            _terminal_report(config)(f"warning: {warning}")
    except PtqError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[SUITE_KEY] = suite


def suite_of(config) -> Study:
    return config.stash[SUITE_KEY]


@pytest.fixture(scope="session")
def ptq_suite(request) -> Study:
    """The session's :class:`~ptqcore.study.session.Study` (a :class:`~ptqcore.suite.Suite` with its studies): options, caches, records."""
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
    if select == "quantized":
        return case.precision.quantized
    return True


@pytest.fixture(autouse=True)
def _ptq_int8_mixed_needed(request) -> None:
    """Skip every test of an ``int8-mixed`` case whose plain INT8 case passes its limit, with that
    reason: known only after the INT8 accuracy pass, so at run time (:func:`ptqcore.study.mixed.skip_reason`)."""
    case = _case_of(request.node)
    if case is None or case.precision is not Precision.INT8_MIXED or SUITE_KEY not in request.config.stash:
        return
    from ptqcore.study.mixed import skip_reason

    suite = suite_of(request.config)
    reason = skip_reason(suite, case)
    if reason:
        suite.book.skipped(case, reason)
        pytest.skip(f"{case.id}: {reason}")


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests marked ``ptq_last`` run after all others, whatever order the files were given in (the
    layer profile needs every case's timed latency first). Then load the data set and check every
    model's output width against it before any case runs, so a missing data set or a mismatched model
    stops the run at once."""
    items[:] = ([item for item in items if item.get_closest_marker("ptq_last") is None]
                + [item for item in items if item.get_closest_marker("ptq_last") is not None])
    if SUITE_KEY not in config.stash or config.option.collectonly:
        return
    cases = [case for case in map(_case_of, items) if case is not None]
    if cases:
        try:
            suite_of(config).dataset(cases[0].model)
            suite_of(config).check_output_widths()
        except PtqError as err:
            raise pytest.UsageError(str(err)) from None


def pytest_collection_finish(session) -> None:
    """Every selected test of a case (after ``-k`` / ``-m`` deselection) is expected to finish;
    a case with one that never does is ``incomplete`` in the run file."""
    if SUITE_KEY not in session.config.stash or session.config.option.collectonly:
        return
    book = suite_of(session.config).book
    for item in session.items:
        case = _case_of(item)
        if case is not None:
            book.expect(case, item.nodeid, getattr(item, "originalname", item.name))


def pytest_keyboard_interrupt(excinfo) -> None:
    """Remembered for the run file (pytest calls this before ``pytest_sessionfinish``)."""
    _INTERRUPTED[0] = True


#: pytest_keyboard_interrupt gets no config: the flag of this process's session
_INTERRUPTED = [False]


class SessionEnd:
    """A plugin object of its own (a module holds one ``pytest_sessionfinish``; this module's is the
    fallback writer below): stashes how the session ended before pytest-benchmark's hook writes the
    JSON (its ``pytest_sessionfinish`` wrapper writes before it yields, and this one runs first)."""

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        session.config.stash[EXIT_STATUS_KEY] = int(exitstatus)
        session.config.stash[INTERRUPTED_KEY] = (_INTERRUPTED[0]
                                                 or int(exitstatus) == int(pytest.ExitCode.INTERRUPTED))
        yield


def _case_of(item) -> Optional[Case]:
    """The item's case; None for a test without one, and for pytest's placeholder of an empty
    parameter set (a ``base`` test when every model is an ONNX file)."""
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    return case if isinstance(case, Case) else None


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
    if report.when == "teardown":  # the last phase: the test ran to its end, whatever its outcome
        book.finish(case, item.nodeid)
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
    suite = suite_of(config)
    options = suite.options
    lines = [
        f"ptqcore: models {','.join(options.models)}; precisions {','.join(p.value for p in options.precisions)};"
        f" backends {','.join(options.backends)}; data {options.dataset}; cache {options.cache_dir}"
    ]
    if suite.kernel_probe is not None:  # auto: say what it chose from what, and warn where flags mislead
        from ptqcore.build.kernel_probe import disagreement, probe_summary

        lines.append(f"ptqcore: {probe_summary(suite.cpu_isa, suite.kernel_probe)}")
        warning = disagreement(suite.cpu_isa, suite.kernel_probe.errors)
        if warning:
            lines.append(f"ptqcore: WARNING: {warning}")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    if SUITE_KEY in config.stash:
        machine_info["ptqcore"] = _machine_info(config)


def _machine_info(config) -> dict:
    from ptqcore.environment import collect_environment

    return {**suite_of(config).environment(), "environment": collect_environment()}


def _ptqcore_section(config) -> dict:
    suite = suite_of(config)
    return {
        "schema_version": SCHEMA_VERSION,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in suite.options.__dict__.items()},
        "session": suite.book.session_summary(config.stash.get(EXIT_STATUS_KEY, None),
                                              config.stash.get(INTERRUPTED_KEY, _INTERRUPTED[0])),
        "records": suite.book.as_list(),
    }


def pytest_benchmark_update_json(config, benchmarks, output_json) -> None:
    """Give every benchmark entry its case's whole record, and list all records (skipped too)."""
    if SUITE_KEY not in config.stash:
        return
    section = _ptqcore_section(config)
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
              "ptqcore": _ptqcore_section(config)}
    data = json.dumps(output, indent=2, default=str).encode()
    if hasattr(value, "write"):
        with value:
            value.write(data)
    else:
        Path(value).write_bytes(data)

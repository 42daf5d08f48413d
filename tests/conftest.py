"""Shared fixtures: ONE trained tiny model per test session.

Training ``tiny_cnn`` is most of what the end-to-end tests cost, so it happens once, here, into a
session-wide warm cache; each test that needs the model gets a private copy of that cache
(:func:`tiny_cache`), so tests that check "built" vs "reused" messages, corrupt entries or list the
cache's files cannot disturb one another. A copy holds only the base model (a few hundred kB):
ONNX files and artifacts are still built by the tests that exercise building them.

The base model's cache key covers the training recipe and the data split (``ptqcore.store``), so
every test that wants the warm entry uses ``tests/tiny_model.py``'s settings (also as the fixtures
:func:`tiny_settings` and :func:`tiny_cli_options`).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import TINY_CLI_OPTIONS, TINY_SETTINGS


@pytest.fixture(scope="session")
def tiny_settings():
    """``SuiteOptions`` fields the warm tiny model was trained with (do not change the dict)."""
    return dict(TINY_SETTINGS)


@pytest.fixture(scope="session")
def tiny_cli_options():
    """The same settings as pytest options (``--ptq-train-epochs``, ``--ptq-eval-size``)."""
    return list(TINY_CLI_OPTIONS)


@pytest.fixture(scope="session")
def warm_tiny_cache(tmp_path_factory):
    """A cache folder holding the trained tiny base model; read-only by contract (copy it to change it)."""
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    cache = tmp_path_factory.mktemp("warm-tiny-cache")
    Study(SuiteOptions(models=("tiny",), cache_dir=cache, telemetry=False, **TINY_SETTINGS)).base_model("tiny_cnn")
    return cache


@pytest.fixture(scope="session")
def copy_tiny_cache(warm_tiny_cache, tmp_path_factory):
    """A function that copies the warm cache into a new temporary folder and returns the copy's path
    (for fixtures of a wider scope than :func:`tiny_cache`)."""

    def copy():
        target = tmp_path_factory.mktemp("tiny-cache") / "cache"
        shutil.copytree(str(warm_tiny_cache), str(target))
        return target

    return copy


@pytest.fixture
def tiny_cache(copy_tiny_cache):
    """A private copy of :func:`warm_tiny_cache` for one test: it may add, rebuild or corrupt entries."""
    return copy_tiny_cache()


# -- a real run of the suite's per-case tests on the tiny model -------------------------------------
REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = [str(REPO / "benchmarks" / name) for name in ("test_compression.py", "test_inference.py",
                                                          "test_thresholds.py")]
FAST = ["--ptq-models", "tiny", "--ptq-compress-rounds", "1", "--ptq-compress-warmup", "0",
        "--ptq-latency-min-time", "0.05", "--ptq-latency-min-rounds", "5", "--ptq-warmup-time", "0.01",
        "--ptq-no-telemetry", "-p", "no:cacheprovider", "--benchmark-save-data"]
THRESHOLDS = ('[[overrides]]\nmodels = "tiny_cnn"\nprecision = "int8"\nmin_size_reduction = 1.5\n'
              'reason = "the tiny model is mostly per-layer overhead, not weights"\n')


def suite_command(folder: Path, cache: Path, cli_options, out: Path) -> list:
    """The command line of a fast suite run on the tiny model in ``folder`` writing ``out`` (with raw samples)."""
    (folder / "thresholds.toml").write_text(THRESHOLDS)
    return [sys.executable, "-m", "pytest", *BENCHMARKS, *FAST, "--ptq-cache-dir", str(cache), *cli_options,
            "--ptq-thresholds", str(folder / "thresholds.toml"), "--benchmark-json", str(out)]


@pytest.fixture(scope="session")
def complete_run(copy_tiny_cache, tiny_cli_options, tmp_path_factory):
    """``(run file, cache)``: a complete run of the tiny model's per-case tests, made once per session;
    its cache is warm for later runs (do not rely on it staying unchanged)."""
    folder = tmp_path_factory.mktemp("complete-run")
    cache = copy_tiny_cache()
    out = folder / "run.json"
    done = subprocess.run(suite_command(folder, cache, tiny_cli_options, out), cwd=folder, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return out, cache



"""The README's two set-up commands stay true: CI runs the second, and both name real paths."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_the_main_job_and_the_test_command():
    main_job, tests = readme_commands()
    assert main_job.endswith("pytest benchmarks/ --benchmark-json out.json")
    assert tests.endswith("pytest tests/")
    assert 'pip install -e ".[test]"' in tests


def test_ci_runs_the_readme_test_command_in_a_fresh_environment():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-m venv" in ci
    assert 'pip" install --quiet -e ".[test]"' in ci
    assert '"$venv/bin/pytest" tests/' in ci
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci


def test_ci_also_runs_the_oldest_environment_or_says_it_was_skipped():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "run_job newest python3" in ci
    assert 'run_job oldest "$python38" tests/constraints-floor.txt' in ci
    assert (ROOT / "tests" / "constraints-floor.txt").is_file()
    assert "Python 3.8 not found: the oldest-environment job is SKIPPED" in ci


def test_ci_fails_when_either_job_fails(tmp_path):
    """Run .ci/run's summary logic with stub jobs: any failing job (pytest's 5 included) fails CI."""
    import subprocess

    ci = (ROOT / ".ci" / "run").read_text()
    summary = ci[ci.index("newest=0"):]
    for newest, oldest, python38, expected in [
        (0, 0, True, 0), (1, 0, True, 1), (0, 5, True, 5), (0, 0, False, 0), (2, 0, False, 2),
    ]:
        stubs = (
            f"run_job() {{ [ \"$1\" = newest ] && return {newest}; return {oldest}; }}\n"
            f"find_python38() {{ {'echo /usr/bin/python3.8' if python38 else 'return 1'}; }}\n"
        )
        script = tmp_path / "ci.sh"
        script.write_text("set -euo pipefail\n" + stubs + summary)
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        assert done.returncode == expected, (newest, oldest, python38, done.stdout, done.stderr)
        assert ("SKIPPED" in done.stdout) == (not python38)


def test_import_is_cheap_and_needs_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, ptqcore, ptqcore.case, ptqcore.measure.stats; print(sorted(m for m in ('torch','onnxruntime','tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _setuptools_version():
    try:
        import setuptools
    except ImportError:
        return (0,)
    return tuple(int(part) for part in re.findall(r"\d+", setuptools.__version__)[:2])


@pytest.mark.skipif(_setuptools_version() < (64,), reason="building the wheel offline needs setuptools >= 64 installed")
def test_the_wheel_ships_the_imagenet_wordnet_ids(tmp_path):
    """A non-editable install has ``imagenet1k_wnids.txt`` (package data), so WordNet-id folders map there too."""
    import shutil
    import subprocess
    import sys
    import zipfile

    for name in ("pyproject.toml", "README.md"):
        shutil.copy(str(ROOT / name), str(tmp_path / name))
    shutil.copytree(str(ROOT / "src"), str(tmp_path / "src"), ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(tmp_path)], capture_output=True, check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("ptqcore-*.whl")
    with zipfile.ZipFile(str(wheel)) as archive:
        shipped = archive.read("ptqcore/models/imagenet1k_wnids.txt")
    assert shipped == (ROOT / "src" / "ptqcore" / "models" / "imagenet1k_wnids.txt").read_bytes()

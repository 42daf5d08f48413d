"""The README's two set-up commands stay true: CI runs the second, and both name real paths."""

import re
from pathlib import Path

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
    assert "python3 -m venv" in ci
    assert 'pip" install --quiet -e ".[test]"' in ci
    assert re.search(r'pytest" tests/\s*$', ci)


def test_import_is_cheap_and_needs_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, ptqcore, ptqcore.case, ptqcore.stats; print(sorted(m for m in ('torch','onnxruntime','tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The GitHub workflows pass the workflow schema (offline) and do what the README says they do."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML  # a dependency of check-jsonschema (the test extra)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def lint(*paths):
    """check-jsonschema with its vendored GitHub workflow schema; any network use fails (dead proxy)."""
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, paths),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def load(name):
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def steps_running(job, text):
    return [step for step in job["steps"] if text in step.get("run", "")]


def test_both_workflows_exist():
    assert [path.name for path in FILES] == ["jetson-benchmarks.yml", "tests.yml"]


def test_workflows_pass_the_schema_offline():
    done = lint(*FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (WORKFLOWS / "tests.yml").read_text()
    assert "    runs-on: " in text
    broken.write_text(text.replace("    runs-on: ", "    runs_on: "))
    done = lint(broken)
    assert done.returncode == 1 and "runs-on" in done.stdout


def test_hosted_workflow_runs_the_readme_test_command_in_the_oldest_and_newest_environments():
    readme = (ROOT / "README.md").read_text()
    test_command = re.findall(r"```bash\n(.+?)\n```", readme)[1]
    workflow = load("tests.yml")
    (job,) = workflow["jobs"].values()
    entries = {entry["environment"]: entry for entry in job["strategy"]["matrix"]["include"]}
    assert set(entries) == {"oldest", "newest"} and job["strategy"]["fail-fast"] is False
    assert (entries["oldest"]["python"], entries["oldest"]["constraints"]) == ("3.8", "tests/constraints-floor.txt")
    assert entries["newest"]["python"] in ("3.12", "3.13") and entries["newest"]["constraints"] == ""
    assert (ROOT / entries["oldest"]["constraints"]).is_file()
    assert all(entry["os"].startswith("ubuntu-") for entry in entries.values())
    assert job["runs-on"] == "${{ matrix.os }}" and job["env"]["PIP_CONSTRAINT"] == "${{ matrix.constraints }}"
    setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    assert [step["run"].strip() for step in steps_running(job, "pytest tests/")] == [test_command]


def test_floor_constraints_pin_what_pyproject_admits():
    """Every pinned floor names a dependency of the package, at a version its specifier allows."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        declared[requirement.name.lower()] = requirement.specifier
    pins = [line.split("#")[0].strip() for line in (ROOT / "tests" / "constraints-floor.txt").read_text().splitlines()]
    pins = [Requirement(pin) for pin in pins if pin]
    assert {"torch", "onnxruntime", "numpy", "pytest-benchmark"} <= {pin.name for pin in pins}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert pin.name in declared, f"{pin.name} is pinned but not a dependency"
        assert declared[pin.name].contains(spec.version), f"{pin} is outside pyproject's {declared[pin.name]}"


@pytest.fixture(scope="module")
def jetson():
    return load("jetson-benchmarks.yml")


def test_jetson_matrix_runs_on_self_hosted_runners_by_device_label(jetson):
    (job,) = jetson["jobs"].values()
    entries = job["strategy"]["matrix"]["include"]
    assert [entry["runner"] for entry in entries] == [
        ["self-hosted", "jetson", "jp5"],
        ["self-hosted", "jetson", "jp6"],
    ]
    assert all(entry["label"] == entry["runner"][-1] for entry in entries)
    assert job["runs-on"] == "${{ matrix.runner }}"
    assert job["strategy"]["fail-fast"] is False


def test_jetson_job_benchmarks_uploads_compares_and_promotes(jetson):
    (job,) = jetson["jobs"].values()
    (bench,) = steps_running(job, "pytest benchmarks/")
    assert '--benchmark-json "$RESULT"' in bench["run"] and "--benchmark-save-data" in bench["run"]
    assert "--ptq-backends onnxruntime,tensorrt" in bench["run"]  # the boards are there for TensorRT
    (doctor,) = steps_running(job, "ptqcore doctor")  # before the benchmarks: a wrong install fails first
    assert job["steps"].index(doctor) < job["steps"].index(bench)
    (install,) = steps_running(job, "scripts/jetson_install.py")  # keeps NVIDIA's packages and the board's jtop
    assert "--system-site-packages" in install["run"] and "pip install -e" not in install["run"]
    assert job["steps"].index(install) < job["steps"].index(doctor)
    assert job["env"]["RESULT"] == "results/${{ matrix.label }}.json"
    assert job["env"]["BASELINE"] == "baselines/${{ matrix.label }}.json"
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "${{ !cancelled() }}"
    (compare,) = steps_running(job, "ptqcore compare")
    assert re.search(r'ptqcore compare "\$BASELINE" "\$RESULT" --markdown .*>> "\$GITHUB_STEP_SUMMARY"', compare["run"])
    assert "continue-on-error" in compare  # only while promoting: a regression does not block the promotion
    promote_input = jetson["on"]["workflow_dispatch"]["inputs"]["promote"]
    assert (promote_input["type"], promote_input["default"]) == ("boolean", False)
    (promote,) = steps_running(job, 'cp "$RESULT" "$BASELINE"')
    assert "inputs.promote" in promote["if"] and "git push" in promote["run"] and "git commit" in promote["run"]
    assert jetson["permissions"] == {"contents": "write"}
    assert "pull_request" not in jetson["on"]  # never run forks' code on the self-hosted boards


def test_every_run_script_is_valid_bash():
    for path in FILES:
        for job in YAML(typ="safe").load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    script = re.sub(r"\$\{\{.*?\}\}", "X", step["run"])
                    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
                    assert done.returncode == 0, (path.name, step.get("name"), done.stderr)

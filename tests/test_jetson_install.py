"""``scripts/jetson_install.py`` on simulated JetPack 5 and 6 environments: nothing of NVIDIA's is replaced.

Each simulation is a fresh virtual environment holding stand-ins for NVIDIA's packages (dist-info
only, at the versions JetPack ships: torch ``2.1.0a0+41361538.nv23.06`` on JetPack 5.1, torch
``2.5.0a0+872d972e41.nv24.08`` with torchvision ``0.20.0a0+afc54f7`` on JetPack 6.1, onnxruntime-gpu,
tensorrt), and a local index of stand-in wheels pip resolves ptqcore's requirements from (``--no-index
--find-links``; offline, so the result does not move with PyPI). The stand-ins keep the pins that
decide the outcome as the real wheels' METADATA has them (read from the aarch64 wheels on PyPI):
torchvision 0.16.2 ``torch==2.1.2``, 0.19.1 ``torch==2.4.1``, 0.29.1 ``torch>=2.14.0``; onnx 1.23.2
``numpy>=1.23.2``, ``ml_dtypes>=0.5.4``; ml_dtypes 0.7.0 ``numpy>=2.0.0``, 0.5.4 ``numpy>=1.21``.
Other requirements are left out. The stand-in ptqcore wheel carries pyproject.toml's dependencies.
"""

import importlib.util
import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "jetson_install.py"
spec = importlib.util.spec_from_file_location("jetson_install", SCRIPT)
jetson_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jetson_install)

JP5 = {"torch": "2.1.0a0+41361538.nv23.06", "numpy": "1.24.4", "onnxruntime-gpu": "1.16.0", "tensorrt": "8.5.2.2"}
JP6 = {"torch": "2.5.0a0+872d972e41.nv24.08", "torchvision": "0.20.0a0+afc54f7", "numpy": "1.26.4",
       "onnxruntime-gpu": "1.20.0", "tensorrt": "10.3.0.30"}
INDEX = {  # name -> {version: requirements}
    "torch": {"2.1.2": [], "2.4.1": [], "2.5.0": [], "2.14.1": []},
    "torchvision": {"0.16.2": ["numpy", "torch==2.1.2"], "0.19.1": ["numpy", "torch==2.4.1"],
                    "0.20.0": ["numpy", "torch==2.5.0"], "0.29.1": ["numpy", "torch>=2.14.0"]},
    "onnx": {"1.17.0": ["numpy>=1.20", "protobuf>=3.20.2"],
             "1.23.2": ["numpy>=1.23.2", "protobuf>=6.31.1", "ml_dtypes>=0.5.4"]},
    "ml-dtypes": {"0.5.4": ["numpy>=1.21"], "0.7.0": ["numpy>=2.0.0"]},
    "protobuf": {"6.31.1": []}, "numpy": {"1.24.4": [], "1.26.4": [], "2.2.6": []},
    "onnxruntime": {"1.19.2": ["numpy>=1.21.6"], "1.23.2": ["numpy>=1.21.6"]},
    "scikit-learn": {"1.3.2": ["numpy>=1.17.3"]}, "pytest": {"8.3.5": []}, "pytest-benchmark": {"4.0.0": ["pytest>=3.8"]},
    "psutil": {"7.2.2": []}, "tomli": {"2.0.1": []},
}


def wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    """A stand-in wheel: dist-info only."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                         + "".join(f"Requires-Dist: {item}\n" for item in requires))
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: ptqcore-tests\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{dist}.dist-info/RECORD", f"{dist}.dist-info/METADATA,,\n{dist}.dist-info/WHEEL,,\n"
                         f"{dist}.dist-info/RECORD,,\n")
    return path


def project_requirements():
    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index")
    for name, versions in INDEX.items():
        for version, requires in versions.items():
            wheel(folder, name, version, requires)
    wheel(folder, "ptqcore", "0.1.0", project_requirements())
    return folder


def board(tmp_path: Path, nvidia: dict) -> Path:
    """A fresh environment with NVIDIA's packages (stand-ins) installed; its python."""
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    stand_ins = tmp_path / "nvidia"
    stand_ins.mkdir()
    files = [str(wheel(stand_ins, name, version)) for name, version in nvidia.items()]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", *files], check=True)
    return python


def versions(python: Path) -> dict:
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                            check=True, capture_output=True, text=True).stdout
    return {jetson_install.normalize(item["name"]): item["version"] for item in json.loads(listed)}


def run_installer(python: Path, index: Path, *extra):
    return subprocess.run([str(python), str(SCRIPT), "--project", "ptqcore==0.1.0", "--pip-option=--no-index",
                           f"--pip-option=--find-links={index}", "--pip-option=--disable-pip-version-check", *extra],
                          capture_output=True, text=True)


def test_jetpack_5_without_torchvision_is_refused_in_one_line_and_nothing_changes(tmp_path, index):
    python = board(tmp_path, JP5)
    before = versions(python)
    naive = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--no-index",
                            f"--find-links={index}", "ptqcore==0.1.0"], capture_output=True, text=True)
    planned = {item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(naive.stdout)["install"]}
    assert planned["torch"] in ("2.4.1", "2.14.1") and "onnxruntime" in planned  # a plain pip install replaces torch
    done = run_installer(python, index)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("jetson-install: error: torchvision is not installed, and no torchvision pip can get"
                           " accepts NVIDIA's torch 2.1.0a0+41361538.nv23.06")
    assert "fix: build torchvision 0.16 against it" in line
    assert versions(python) == before


def test_jetpack_6_installs_only_what_is_missing_and_keeps_nvidias_stack(tmp_path, index):
    python = board(tmp_path, JP6)
    done = run_installer(python, index)
    assert done.returncode == 0, done.stderr
    after = versions(python)
    assert all(jetson_install.same_version(after[name], version) for name, version in JP6.items())  # none replaced
    assert "onnxruntime" not in after  # the CPU build would shadow onnxruntime-gpu
    assert after["ml-dtypes"] == "0.5.4" and after["onnx"] == "1.23.2"  # numpy 2 avoided, not forced
    assert after["ptqcore"] == "0.1.0"
    assert "jetson-install: left out: onnxruntime 1.23.2 (PyPI's CPU build" in done.stdout


def test_jetpack_6_without_nvidias_torchvision_names_the_release_to_build(tmp_path, index):
    python = board(tmp_path, {k: v for k, v in JP6.items() if k != "torchvision"})
    done = run_installer(python, index, "--dry-run")
    assert done.returncode == 2 and "fix: build torchvision 0.20 against it" in done.stderr


def test_the_plan_leaves_out_the_cpu_onnxruntime_and_refuses_a_replacement():
    report = {"install": [{"metadata": {"name": "onnxruntime", "version": "1.23.2"}},
                          {"metadata": {"name": "onnx", "version": "1.17.0"}},
                          {"metadata": {"name": "ptqcore", "version": "0.1.0"}}]}
    keep, left_out = jetson_install.plan(report, {"onnxruntime-gpu": "1.16.0"}, "ptqcore")
    assert keep == ["onnx==1.17.0"] and left_out[0].startswith("onnxruntime 1.23.2 (PyPI's CPU build")
    replacing = {"install": [{"metadata": {"name": "numpy", "version": "2.2.6"}}]}
    with pytest.raises(jetson_install.Refused, match="would replace NVIDIA's numpy 1.26.4 with 2.2.6"):
        jetson_install.plan(replacing, {"numpy": "1.26.4"}, "ptqcore")


def test_versions_compare_as_pip_normalizes_them():
    assert jetson_install.same_version("2.5.0a0+872d972e41.nv24.08", "2.5.0a0+872d972e41.nv24.8")
    assert not jetson_install.same_version("2.4.1", "2.1.0a0+41361538.nv23.06")


def test_constraints_pin_what_is_installed_and_the_torchvision_release_follows_torch():
    assert jetson_install.constraints({"torch": "2.1.0a0+41361538.nv23.06", "numpy": "1.24.4"}) == \
        "numpy==1.24.4\ntorch==2.1.0a0+41361538.nv23.06\n"
    assert "torchvision 0.16 " in jetson_install.torchvision_fix("2.1.0a0+41361538.nv23.06")
    assert "torchvision 0.20 " in jetson_install.torchvision_fix("2.5.0a0+872d972e41.nv24.08")


def test_the_script_needs_nothing_but_the_standard_library():
    imported = subprocess.run([sys.executable, "-S", "-c", "import runpy, sys; sys.argv=['x', '--help'];"
                               f" runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"],
                              capture_output=True, text=True, env={"PYTHONPATH": "", "PATH": "/usr/bin:/bin"})
    assert imported.returncode == 0 and "--dry-run" in imported.stdout


def test_a_conflict_over_an_nvidia_package_names_it_and_the_requirement():
    output = ("Collecting onnx ... ERROR: Cannot install ptqcore because these package versions have conflicting"
              " dependencies. The conflict is caused by: ml-dtypes 0.7.0 depends on numpy>=2.0.0 The user requested"
              " (constraint) numpy==1.26.4 To fix this you could try to: ...")
    line = jetson_install.refusal_from_pip(output, {"numpy": "1.26.4", "torch": "2.3.0"})
    assert line.startswith("a requirement of ptqcore needs another numpy than NVIDIA's 1.26.4 (ml-dtypes 0.7.0 depends"
                           " on numpy>=2.0.0")
    assert "fix: keep the numpy your NVIDIA torch was built against" in line

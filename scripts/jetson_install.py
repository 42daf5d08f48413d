"""Install ptqcore on a Jetson without replacing NVIDIA's torch, torchvision, numpy, onnxruntime-gpu,
TensorRT or the board's jetson-stats; only what is missing is installed.

    python3 -m venv --system-site-packages .venv          # NVIDIA's packages stay visible
    .venv/bin/python -m pip install --upgrade pip          # JetPack 5's pip has no --dry-run --report
    .venv/bin/python scripts/jetson_install.py [--extras plot] [--dry-run]

Run it with the environment's own Python (standard library only, Python >= 3.8). It pins every
protected package that is installed to its installed version (a constraints file), asks pip what
installing ptqcore would then need (``pip install --dry-run --report``), leaves out PyPI's CPU
``onnxruntime`` where NVIDIA's ``onnxruntime-gpu`` is installed (both are the module ``onnxruntime``
and the environment's CPU copy would win), and installs the rest with ``--no-deps``. It refuses,
with one line naming the package and how to get NVIDIA's build, when no choice keeps NVIDIA's
packages: above all torchvision on JetPack 5, for which NVIDIA ships no wheel and every PyPI
torchvision pins its own torch release. Exit status: 0 installed (or planned, with ``--dry-run``),
2 refused or pip failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

try:
    from importlib import metadata
except ImportError:  # pragma: no cover - Python < 3.8 is below ptqcore's floor
    sys.exit("jetson-install: error: Python 3.8 or newer is needed; fix: use JetPack's python3")

ROOT = Path(__file__).resolve().parent.parent
#: What a Jetson brings and pip must never replace (NVIDIA's builds, the board's jtop service version).
PROTECTED = ("torch", "torchvision", "numpy", "onnxruntime-gpu", "tensorrt", "jetson-stats")
#: torch minor release -> the torchvision release built for it (pytorch/vision's compatibility table).
TORCHVISION_FOR_TORCH = {"2.0": "0.15", "2.1": "0.16", "2.2": "0.17", "2.3": "0.18", "2.4": "0.19", "2.5": "0.20",
                         "2.6": "0.21", "2.7": "0.22", "2.8": "0.23"}
WHERE_NVIDIA = {
    "torch": "NVIDIA's torch wheel for your JetPack (PyTorch for Jetson, developer.download.nvidia.com/compute/redist/jp/)",
    "numpy": "the numpy your NVIDIA torch was built against (numpy<2 for torch < 2.4)",
    "onnxruntime-gpu": "NVIDIA's onnxruntime-gpu wheel for your JetPack (Jetson Zoo, elinux.org/Jetson_Zoo)",
    "tensorrt": "JetPack's TensorRT (apt install nvidia-tensorrt / python3-libnvinfer)",
    "jetson-stats": "the board's jetson-stats (sudo pip3 install jetson-stats; its jtop.service)",
}


class Refused(Exception):
    """Installing would replace an NVIDIA package, or pip found no choice that keeps them."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(a: str, b: str) -> bool:
    """Equal as PEP 440 versions, for the forms pip and metadata write (``nv24.08`` is ``nv24.8``)."""
    def canonical(text: str) -> tuple:
        return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"[.+!_-]", text.strip()))

    return canonical(a) == canonical(b)


def installed_versions(names: Sequence[str] = PROTECTED) -> Dict[str, str]:
    """The installed version of each of ``names`` that is installed (as this Python sees it)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def constraints(installed: Mapping[str, str]) -> str:
    """A pip constraints file pinning every installed protected package to its version."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(installed.items()))


def torchvision_fix(torch_version: str) -> str:
    minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    minor = re.sub(r"(a|b|rc)\d*$", "", minor)
    vision = TORCHVISION_FOR_TORCH.get(minor, "matching your torch")
    return (f"build torchvision {vision} against it: git clone --branch v{vision}.0 https://github.com/pytorch/vision"
            " && cd vision && python3 setup.py install --user (NVIDIA ships no torchvision for JetPack 5), then run"
            " this again")


def refusal_from_pip(output: str, installed: Mapping[str, str]) -> str:
    """One line for a resolution pip could not make with NVIDIA's versions pinned (``output``: pip's)."""
    conflict = _conflict(" ".join(output.split()))
    if "torchvision" in conflict and "torchvision" not in installed and "torch" in installed:
        return (f"torchvision is not installed, and no torchvision pip can get accepts NVIDIA's torch"
                f" {installed['torch']} (each PyPI release pins its own torch); fix: {torchvision_fix(installed['torch'])}")
    culprit = next((name for name in PROTECTED if name in installed and re.search(rf"\b{re.escape(name)}\b", conflict)),
                   None)
    if culprit:
        return (f"a requirement of ptqcore needs another {culprit} than NVIDIA's {installed[culprit]} ({conflict});"
                f" fix: keep {WHERE_NVIDIA.get(culprit, culprit)} and install an older release of the package that"
                " asks for it")
    return f"pip could not resolve ptqcore's requirements ({conflict}); fix: see pip's message above"


def _conflict(text: str) -> str:
    """What pip says caused a conflict (its "The conflict is caused by:" lines), else its last error."""
    match = re.search(r"The conflict is caused by: (.*?)(To fix this|$)", text)
    if match:
        return match.group(1)[:300].strip()
    errors = re.findall(r"ERROR: (.*?)(?= ERROR: |$)", text)
    return (errors[-1] if errors else text[-300:]).strip()[:300]


def plan(report: Mapping, installed: Mapping[str, str], project: str) -> Tuple[List[str], List[str]]:
    """From pip's ``--report``: the ``name==version`` items to install (``--no-deps``) and what was
    left out and why. Raises :class:`Refused` if an installed protected package would be replaced."""
    keep, left_out = [], []
    for item in report.get("install", []):
        name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
        if name == normalize(project):
            continue
        if name == "onnxruntime" and "onnxruntime-gpu" in installed:
            left_out.append(f"onnxruntime {version} (PyPI's CPU build: NVIDIA's onnxruntime-gpu"
                            f" {installed['onnxruntime-gpu']} is the module onnxruntime here)")
            continue
        if name in installed and not same_version(installed[name], version):
            raise Refused(f"installing ptqcore would replace NVIDIA's {name} {installed[name]} with {version};"
                          f" fix: keep {WHERE_NVIDIA.get(name, name)}")
        keep.append(f"{name}=={version}")
    return keep, left_out


def pip(python: str, args: Sequence[str], options: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pip", *args, *options], capture_output=True, text=True)


def install(project: Sequence[str], extras: str, dry_run: bool, options: Sequence[str], python: str = sys.executable,
            installed: Optional[Mapping[str, str]] = None) -> Tuple[int, List[str]]:
    """Plan and (unless ``dry_run``) install ``project`` (pip's arguments naming it); the exit status
    and the lines to print. ``options`` go to every pip call (an index, ``--find-links``)."""
    installed = dict(installed_versions() if installed is None else installed)
    spec = list(project)
    if extras:
        spec[-1] = f"{spec[-1]}[{extras}]"
    with tempfile.TemporaryDirectory(prefix="ptqcore-jetson-") as scratch:
        pins, report_path = Path(scratch) / "nvidia.txt", Path(scratch) / "report.json"
        pins.write_text(constraints(installed))
        done = pip(python, ["install", "--dry-run", "--report", str(report_path), "-c", str(pins), *spec],
                   options)  # not --quiet: pip names the conflict only when it talks
        if done.returncode != 0:
            raise Refused(refusal_from_pip(done.stdout + done.stderr, installed))
        keep, left_out = plan(json.loads(report_path.read_text()), installed, _project_name(project))
    lines = [f"kept: {name} {version}" for name, version in sorted(installed.items())]
    lines += [f"left out: {item}" for item in left_out] + [f"to install: {item}" for item in keep]
    if dry_run:
        return 0, lines + ["dry run: nothing installed"]
    for args in ([keep] if keep else []) + [spec]:  # the missing packages, then ptqcore itself
        done = pip(python, ["install", "--no-deps", "--quiet", *args], options)
        if done.returncode != 0:
            raise Refused(f"pip install failed ({' '.join(done.stderr.split())[-240:]}); fix: see pip's message")
    changed = {name: version for name, version in installed_versions(list(installed)).items()
               if not same_version(version, installed[name])}
    if changed:  # cannot happen with --no-deps and the plan above; said loudly if it ever does
        raise Refused(f"NVIDIA's packages changed during the install: {changed}; fix: reinstall them")
    return 0, lines + ["installed: ptqcore and the packages above; NVIDIA's packages unchanged"]


def _project_name(project: Sequence[str]) -> str:
    last = project[-1]
    return "ptqcore" if "/" in last or last in (".", str(ROOT)) else re.split(r"[=<>\[ ]", last)[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="", help="ptqcore extras to add, e.g. plot (never jetson: the board's own"
                        " jetson-stats is kept)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed and install nothing")
    parser.add_argument("--project", nargs="+", default=["-e", str(ROOT)], metavar="ARG",
                        help="pip's arguments naming what to install (default: -e <this checkout>)")
    parser.add_argument("--pip-option", action="append", default=[], metavar="OPT",
                        help="an option for every pip call, e.g. --pip-option=--find-links=DIR (repeatable)")
    args = parser.parse_args(argv)
    try:
        status, lines = install(args.project, args.extras, args.dry_run, args.pip_option)
    except Refused as refused:
        print(f"jetson-install: error: {refused}", file=sys.stderr)
        return 2
    print("\n".join(f"jetson-install: {line}" for line in lines))
    return status


if __name__ == "__main__":
    raise SystemExit(main())

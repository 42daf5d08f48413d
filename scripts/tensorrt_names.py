"""Write the real TensorRT Python bindings' name table: which of the names ptqcore and its fakes use
each release's bindings define.

    python scripts/tensorrt_names.py [--out tests/data/tensorrt/names.json] [--wheels DIR]

For each release in :data:`RELEASES` it downloads the binding wheel from PyPI (``pip download
--no-deps``; no GPU, no TensorRT libraries needed), reads the NUL-terminated strings of its
extension modules (pybind11 registers every class, method, property and enum value under its name as
one C string) and keeps those that are exactly a candidate name: the last part of every name in
``tests/fakes/tensorrt_fakes.AVAILABLE`` and of every ``trt.X.Y`` the code in
``src/ptqcore/backends/tensorrt`` uses. ``tests/test_tensorrt_names.py`` checks the code and the fakes
against the file. TensorRT 8.4 and 8.5 (JetPack 5) have no bindings on PyPI: for them the fakes'
``Span`` sources (``pyCore.cpp`` on NVIDIA/TensorRT's release branches) stand in, as the file says.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
#: release (major.minor) -> (PyPI distribution, version) of its Python bindings.
RELEASES = {
    "8.6": ("tensorrt-bindings", "8.6.1"),
    "10.0": ("tensorrt-cu12-bindings", "10.0.1"),
    "10.3": ("tensorrt-cu12-bindings", "10.3.0"),
    "10.7": ("tensorrt-cu12-bindings", "10.7.0"),
    "10.12": ("tensorrt-cu12-bindings", "10.12.0.36"),
    "10.16": ("tensorrt-cu12-bindings", "10.16.1.11"),
    "11.0": ("tensorrt-cu12-bindings", "11.0.0.114"),
    "11.1": ("tensorrt-cu12-bindings", "11.1.0.106"),
    "11.4": ("tensorrt-cu12-bindings", "11.4.0.106"),
}
STAND_INS = {"8.4": "no PyPI bindings: the fakes' Span sources (pyCore.cpp @ NVIDIA/TensorRT release/8.4)",
             "8.5": "no PyPI bindings: the fakes' Span sources (pyCore.cpp @ NVIDIA/TensorRT release/8.5)"}
PYTHONS = ("3.11", "3.10", "3.8")
#: 10.12 on are built for glibc 2.28, earlier releases for 2.17.
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def code_names(folder: Path = ROOT / "src" / "ptqcore" / "backends" / "tensorrt") -> Set[str]:
    """Every ``trt.X`` and ``trt.X.Y`` (dunders left out) the modules in ``folder`` use."""
    found: Set[str] = set()
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                chain = []
                while isinstance(node, ast.Attribute):
                    chain.append(node.attr)
                    node = node.value
                if isinstance(node, ast.Name) and node.id == "trt":
                    parts = [part for part in reversed(chain) if not part.startswith("__")][:2]
                    if parts:
                        found.add(".".join(parts))
    return found


def fake_names() -> Set[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.tensorrt_fakes import AVAILABLE

    return set(AVAILABLE)


def candidates() -> Set[str]:
    """The bare names looked for: the last part of every code and fake name."""
    return {name.rsplit(".", 1)[-1] for name in code_names() | fake_names()}


def strings_of(wheel: Path) -> Tuple[Set[str], Set[str]]:
    """The NUL-terminated strings of the wheel's extension modules, and the functions its Python
    files define (``nptype`` lives in the package's ``__init__.py``)."""
    chunks: Set[str] = set()
    defined: Set[str] = set()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".so") or ".so." in member or member.endswith(".pyd"):
                chunks.update(chunk.decode("latin-1") for chunk in archive.read(member).split(b"\0") if chunk)
            elif member.endswith(".py"):
                defined.update(re.findall(r"^def (\w+)", archive.read(member).decode("utf-8", "replace"), re.M))
    return chunks, defined


def presence(name: str, chunks: Set[str], defined: Set[str]) -> str:
    """``exact`` (a string of its own, or a Python function), ``tail`` (only as the end of a longer
    string: the linker stores a string that ends another once, so ``Builder`` may exist only inside
    ``IExprBuilder``; weaker evidence) or ``absent`` (in no string at all: certainly not bound)."""
    if name in chunks or name in defined:
        return "exact"
    return "tail" if any(chunk.endswith(name) for chunk in chunks) else "absent"


def download(distribution: str, version: str, into: Path) -> Path:
    for python in PYTHONS:
        for platform in PLATFORMS:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into),
                                   "--only-binary=:all:", "--python-version", python, "--platform", platform,
                                   f"{distribution}=={version}"], capture_output=True, text=True)
            wheels = sorted(into.glob(f"{distribution.replace('-', '_')}-{version}-*.whl"))
            if done.returncode == 0 and wheels:
                return wheels[0]
    raise SystemExit(f"error: cannot download {distribution}=={version} for Python {', '.join(PYTHONS)}")


def table(wheels: Dict[str, Path], names: Iterable[str]) -> dict:
    wanted = sorted(set(names))
    releases = {}
    for release, wheel in wheels.items():
        chunks, defined = strings_of(wheel)
        found = {name: presence(name, chunks, defined) for name in wanted}
        distribution, version = RELEASES[release]
        releases[release] = {"source": f"{distribution} {version} ({wheel.name})",
                             "exact": [name for name in wanted if found[name] == "exact"],
                             "tail": [name for name in wanted if found[name] == "tail"]}
    return {"about": "Candidate names (code and fakes, last part) per release, from the real binding wheels'"
                     " strings: exact = a string of its own (or a function of the package's Python), tail = only"
                     " the end of a longer string, any other candidate is in no string at all; written by"
                     " scripts/tensorrt_names.py",
            "candidates": wanted, "releases": releases, "stand_ins": STAND_INS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "tensorrt" / "names.json")
    parser.add_argument("--wheels", type=Path, default=None, help="keep the downloaded wheels here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.wheels or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        wheels = {release: download(*spec, folder) for release, spec in RELEASES.items()}
        document = table(wheels, candidates())
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out}: {len(document['candidates'])} names x {len(wheels)} releases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

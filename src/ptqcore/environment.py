"""What machine and software a run measured: Jetson board, L4T / JetPack, CUDA stack, libraries, CPU, power.

:func:`collect_environment` reads files only, relative to ``root`` (``/`` by default; tests point
it at fake trees): nothing is executed and TensorRT is never imported (its version comes from
package metadata). A fact that cannot be read is the string ``"unknown"``, never a guess: no
JetPack version is derived from the L4T release, no power mode name from the default mode.

Sources:

=====================  ===================================================================
``device_model``       ``/proc/device-tree/model`` (NULs stripped)
``l4t``                ``/etc/nv_tegra_release``: ``# R35 (release), REVISION: 3.1`` -> ``35.3.1``
``jetpack``            the installed ``nvidia-jetpack`` package in ``/var/lib/dpkg/status``:
                       ``5.1.1-b56`` -> ``5.1.1`` (the full version is ``jetpack_package``)
``cuda``               ``/usr/local/cuda/version.json``, else ``version.txt``
``cudnn``              ``CUDNN_MAJOR/MINOR/PATCHLEVEL`` in ``cudnn_version*.h`` (or ``cudnn.h``)
``tensorrt`` ...       installed distributions (``importlib.metadata``): tensorrt (else the dpkg
                       ``tensorrt`` package), onnxruntime(-gpu), onnx, torch, torchvision
``gpu_name``, ``gpu_compute_capability``  ``torch.cuda``, only when torch is installed and CUDA works
``cpu_model``, ``cpu_count``  ``/proc/cpuinfo`` (``model name``, else the ARM part number)
``cpu_online``         ``/sys/devices/system/cpu/online``
``power_mode``, ``power_mode_id``  ``/var/lib/nvpmodel/status`` and the names in ``/etc/nvpmodel.conf``
``cpu_mhz``, ``gpu_mhz``  current clocks from cpufreq and the GPU's devfreq node
=====================  ===================================================================
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

UNKNOWN = "unknown"
#: Distributions whose versions are recorded, each with the names it is published under.
PACKAGES = {
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
}
#: ARM CPU implementer and part numbers found on Jetson boards (from the ARM and NVIDIA TRMs).
ARM_PARTS = {
    ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd42"): "ARM Cortex-A78AE",
    ("0x4e", "0x003"): "NVIDIA Denver 2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}
GPU_DEVFREQ_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b")
#: Clocks at the moment of capture: they move from run to run, so comparisons do not list them as changes.
VOLATILE_KEYS = frozenset({"cpu_mhz", "gpu_mhz"})

VersionOf = Callable[[str], Optional[str]]
GpuProbe = Callable[[], Optional[dict]]


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution`` per its metadata, or None (nothing is imported)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def torch_gpu() -> Optional[dict]:
    """``{"name", "compute_capability"}`` of the current CUDA device via torch, or None."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}
    except Exception:  # a broken driver or CUDA install: the GPU is then unknown, not an error
        return None


def collect_environment(
    root: Path = Path("/"), version_of: VersionOf = installed_version, gpu_probe: GpuProbe = torch_gpu
) -> Dict[str, object]:
    """The facts in the module docstring, read under ``root``; every value is a string or a number.

    ``version_of`` and ``gpu_probe`` look at the running Python (package metadata and
    ``torch.cuda``); tests pass fakes for them along with a fake ``root``.
    """
    root = Path(root)
    dpkg = _dpkg_versions(_read(root / "var/lib/dpkg/status"))
    jetpack_package = dpkg.get("nvidia-jetpack")
    gpu = gpu_probe() or {}
    cpu_model, cpu_count = _cpu(_read(root / "proc/cpuinfo"))
    power_id, power_name = read_power_mode(_read(root / "var/lib/nvpmodel/status"), _read(root / "etc/nvpmodel.conf"))
    env: Dict[str, object] = {
        "device_model": _text(_read(root / "proc/device-tree/model")),
        "l4t": _l4t(_read(root / "etc/nv_tegra_release")),
        "jetpack": _leading_version(jetpack_package),
        "jetpack_package": jetpack_package or UNKNOWN,
        "cuda": _cuda(root / "usr/local/cuda"),
        "cudnn": _cudnn(root),
    }
    for name, distributions in PACKAGES.items():
        env[name] = _first(version_of(d) for d in distributions) or UNKNOWN
    if env["tensorrt"] == UNKNOWN:
        env["tensorrt"] = dpkg.get("tensorrt", UNKNOWN)
    env.update(
        gpu_name=gpu.get("name", UNKNOWN),
        gpu_compute_capability=gpu.get("compute_capability", UNKNOWN),
        cpu_model=cpu_model,
        cpu_count=cpu_count,
        cpu_online=_text(_read(root / "sys/devices/system/cpu/online")),
        power_mode=power_name,
        power_mode_id=power_id,
        cpu_mhz=read_cpu_mhz(root / "sys/devices/system/cpu"),
        gpu_mhz=read_gpu_mhz(root / "sys/class/devfreq"),
    )
    return env


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def _text(content: Optional[str]) -> str:
    value = (content or "").replace("\x00", "").strip()
    return value or UNKNOWN


def _first(values: Iterable[Optional[str]]) -> Optional[str]:
    return next((value for value in values if value), None)


def _l4t(content: Optional[str]) -> str:
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+?)\s*,", content or "")
    return f"{match.group(1)}.{match.group(2)}" if match else UNKNOWN


def _dpkg_versions(content: Optional[str]) -> Dict[str, str]:
    """Package -> version of the packages dpkg lists as installed."""
    versions = {}
    for stanza in re.split(r"\n\s*\n", content or ""):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, flags=re.MULTILINE))
        if "Package" in fields and "Version" in fields and fields.get("Status", "").endswith(" installed"):
            versions[fields["Package"].strip()] = fields["Version"].strip()
    return versions


def _leading_version(package_version: Optional[str]) -> str:
    """``5.1.1-b56`` -> ``5.1.1``, ``6.2+b77`` -> ``6.2``, ``1:6.0`` -> ``6.0``."""
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", package_version or "")
    return match.group(1) if match else UNKNOWN


def _cuda(cuda: Path) -> str:
    content = _read(cuda / "version.json")
    if content:
        try:
            version = json.loads(content).get("cuda", {}).get("version")
        except (ValueError, AttributeError):
            version = None
        if isinstance(version, str) and version:
            return version
    match = re.search(r"CUDA Version\s+([\d.]+)", _read(cuda / "version.txt") or "")
    return match.group(1) if match else UNKNOWN


def _cudnn(root: Path) -> str:
    headers = [root / "usr/include/cudnn_version.h", root / "usr/local/cuda/include/cudnn_version.h"]
    headers += sorted(root.glob("usr/include/*-linux-gnu/cudnn_version*.h"), reverse=True)
    headers += [root / "usr/include/cudnn.h", root / "usr/local/cuda/include/cudnn.h"]
    for header in headers:
        content = _read(header) or ""
        parts = [re.search(rf"#define\s+CUDNN_{name}\s+(\d+)", content) for name in ("MAJOR", "MINOR", "PATCHLEVEL")]
        if all(parts):
            return ".".join(part.group(1) for part in parts)
    return UNKNOWN


def _cpu(content: Optional[str]):
    """(model, number of processors listed) from /proc/cpuinfo."""
    if not content:
        return UNKNOWN, UNKNOWN
    fields: Dict[str, str] = {}
    for key, value in re.findall(r"^([^:\n]+?)\s*:\s*(.*)$", content, flags=re.MULTILINE):
        fields.setdefault(key.strip(), value.strip())
    count = len(re.findall(r"^processor\s*:", content, flags=re.MULTILINE))
    model = fields.get("model name") or fields.get("Hardware")
    if not model and "CPU implementer" in fields and "CPU part" in fields:
        implementer, part = fields["CPU implementer"].lower(), fields["CPU part"].lower()
        model = ARM_PARTS.get((implementer, part), f"ARM implementer {implementer} part {part}")
    return model or UNKNOWN, count or UNKNOWN


def read_power_mode(status: Optional[str], conf: Optional[str]):
    """(id, name) of the current nvpmodel mode; the name only when the conf file names that id."""
    match = re.search(r"pmode:\s*(\d+)", status or "")
    if not match:
        return UNKNOWN, UNKNOWN
    mode = int(match.group(1))
    names = {int(i): n for i, n in re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", conf or "")}
    return str(mode), names.get(mode, UNKNOWN)


def read_cpu_mhz(cpus: Path) -> object:
    """Current clock of each CPU in MHz (``{"cpu0": 1984, ...}``), or unknown."""
    clocks = {}
    for path in sorted(cpus.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"), key=lambda p: int(p.parent.parent.name[3:])):
        khz = _text(_read(path))
        if khz.isdigit():
            clocks[path.parent.parent.name] = int(khz) // 1000
    return clocks or UNKNOWN


def read_gpu_mhz(devfreq: Path) -> object:
    """Current GPU clock in MHz from its devfreq node (Jetson), or unknown."""
    for node in sorted(devfreq.glob("*")):
        if any(name in node.name for name in GPU_DEVFREQ_NAMES):
            hz = _text(_read(node / "cur_freq"))
            if hz.isdigit():
                return int(hz) // 1_000_000
    return UNKNOWN

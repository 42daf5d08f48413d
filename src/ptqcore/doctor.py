"""``ptqcore doctor``: what a run here will measure, and why it might not be what the user thinks.

It reads the machine (:func:`gather`: the board and power facts of
:func:`ptqcore.environment.collect_environment`, where torch, numpy and ONNX Runtime come from, TensorRT,
jetson-stats, the CPU's INT8 kernel self-test) and judges it (:func:`findings`, pure: tests give it
simulated machines). A finding is *fatal* when a run would silently measure something other than it
says: TensorRT present while PyTorch sees no CUDA GPU (every TensorRT case would be skipped, blamed on
the setup), NVIDIA's ``onnxruntime-gpu`` installed but the active ``onnxruntime`` a CPU-only copy
(the ONNX Runtime figures would be CPU figures), a numpy that torch cannot exchange arrays with,
a torch built for other GPUs than this one. ``ptqcore doctor`` exits 1 when any finding is fatal.

On a Jetson (``/etc/nv_tegra_release`` or a device-tree model naming one), JetPack comes from the
``nvidia-jetpack`` package; without it only the L4T release is known, and its major release names
the JetPack major (R32: 4, R35: 5, R36: 6), never a minor version.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

from ptqcore.environment import UNKNOWN, collect_environment, installed_version

#: L4T major release -> JetPack major release (NVIDIA's Jetson Linux archive: R32 = JetPack 4.x,
#: R35 = JetPack 5.x, R36 = JetPack 6.x).
JETPACK_OF_L4T = {"32": "4", "35": "5", "36": "6"}
#: GPU architectures of Jetson modules (Nano sm_53, TX2 sm_62, Xavier sm_72, Orin sm_87): a torch whose
#: arch list has none of them is a desktop / server (SBSA) build.
TEGRA_ARCHS = ("sm_53", "sm_62", "sm_72", "sm_87")
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
JTOP_DISTRIBUTION = "jetson-stats"


@dataclass(frozen=True)
class TorchFacts:
    version: str
    location: str
    cuda_build: Optional[str]  # torch.version.cuda: None for a CPU-only build
    cuda_available: bool
    arch_list: Tuple[str, ...] = ()
    device_capability: Optional[str] = None  # "sm_87" of GPU 0 when CUDA works
    numpy_error: Optional[str] = None  # what torch.from_numpy raised, if it did


@dataclass(frozen=True)
class OrtFacts:
    version: str
    location: str
    active: Optional[str]  # the distribution whose files the imported module is
    installed: Tuple[str, ...]
    providers: Tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    """What :func:`gather` read; every field a test can set."""

    machine: str
    python: str
    environment: Mapping[str, object]
    jetson: bool
    numpy: Optional[str]
    torch: Optional[TorchFacts]
    onnxruntime: Optional[OrtFacts]
    tensorrt: Optional[str]  # version when importable
    tensorrt_reason: Optional[str]  # why TensorRT cases cannot run, or None
    jtop_client: Optional[str] = None
    jtop_service: Optional[str] = None
    kernel_probe: str = ""


@dataclass(frozen=True)
class Finding:
    topic: str
    says: str
    problem: Optional[str] = None
    fix: Optional[str] = None
    fatal: bool = False


def jetpack_line(env: Mapping[str, object]) -> str:
    """JetPack from its package, else the major release the L4T release names."""
    l4t, jetpack = str(env.get("l4t", UNKNOWN)), str(env.get("jetpack", UNKNOWN))
    if jetpack != UNKNOWN:
        return f"JetPack {jetpack} (nvidia-jetpack {env.get('jetpack_package')}), L4T {l4t}"
    major = JETPACK_OF_L4T.get(l4t.split(".")[0])
    named = f"JetPack {major}.x by its L4T release" if major else "JetPack unknown"
    return f"{named} (no nvidia-jetpack package), L4T {l4t}"


def _torch_findings(facts: Facts) -> List[Finding]:
    torch = facts.torch
    if torch is None:
        return [Finding("torch", "not installed", "the base cases and every PyTorch model need it",
                        "install NVIDIA's torch for your JetPack (Jetson) or `pip install torch torchvision`",
                        fatal=True)]
    build = f"CUDA {torch.cuda_build} build" if torch.cuda_build else "CPU-only build"
    archs = ",".join(torch.arch_list) or "none"
    says = f"{torch.version} from {torch.location} ({build}; arch list {archs}; CUDA usable: {torch.cuda_available})"
    out = [Finding("torch", says)]
    sbsa = facts.jetson and torch.cuda_build and not set(torch.arch_list) & set(TEGRA_ARCHS)
    if facts.tensorrt is not None and not torch.cuda_available:
        why = ("a build for desktop / server GPUs (SBSA), not NVIDIA's Jetson build" if sbsa
               else "a CPU-only build" if not torch.cuda_build else "its CUDA does not start here")
        out.append(Finding("torch", says, f"TensorRT {facts.tensorrt} is installed but PyTorch sees no CUDA GPU ({why}):"
                           " every TensorRT case would be skipped", "use NVIDIA's torch: a venv made with"
                           " --system-site-packages and `pip install --no-deps -e .` (see the README, Running on a"
                           " Jetson)", fatal=True))
    elif facts.jetson and not torch.cuda_available:
        out.append(Finding("torch", says, "the PyTorch base runs on the CPU cores of this Jetson",
                           "install NVIDIA's torch for your JetPack"))
    if torch.cuda_available and torch.device_capability and torch.arch_list \
            and torch.device_capability not in torch.arch_list:
        out.append(Finding("torch", says, f"this GPU is {torch.device_capability}, which the torch build does not"
                           f" include ({archs})", "install a torch built for this GPU (on a Jetson: NVIDIA's)",
                           fatal=True))
    if torch.numpy_error:
        out.append(Finding("numpy", f"numpy {facts.numpy}", f"torch {torch.version} cannot exchange arrays with it"
                           f" ({torch.numpy_error})", "install the numpy torch was built against, e.g."
                           " `pip install 'numpy<2'` for torch < 2.3 / NVIDIA's JetPack 6.0 torch", fatal=True))
    return out


def _ort_findings(facts: Facts) -> List[Finding]:
    ort = facts.onnxruntime
    if ort is None:
        return [Finding("onnxruntime", "not installed", "the offline default backend needs it",
                        "pip install onnxruntime (NVIDIA's onnxruntime-gpu wheel on a Jetson)", fatal=True)]
    says = (f"{ort.version} from {ort.location}, distribution {ort.active or 'unknown'} (installed:"
            f" {', '.join(ort.installed) or 'none'}); providers {', '.join(ort.providers)}")
    out = [Finding("onnxruntime", says)]
    if "onnxruntime-gpu" in ort.installed and "CUDAExecutionProvider" not in ort.providers:
        out.append(Finding("onnxruntime", says, "onnxruntime-gpu is installed but the active onnxruntime has no CUDA"
                           f" provider (the {ort.active or 'CPU'} copy wins): ONNX Runtime figures would be CPU"
                           " figures", "pip uninstall onnxruntime, then reinstall NVIDIA's onnxruntime-gpu wheel",
                           fatal=True))
    elif facts.jetson and "CUDAExecutionProvider" not in ort.providers:
        out.append(Finding("onnxruntime", says, "ONNX Runtime cases run on this Jetson's CPU cores (no"
                           " onnxruntime-gpu): that is what their records say (device cpu)",
                           "for GPU ONNX Runtime, install NVIDIA's onnxruntime-gpu wheel for your JetPack and run with"
                           " --ptq-ort-device cuda"))
    return out


def findings(facts: Facts) -> List[Finding]:
    """Everything ``doctor`` says about ``facts``, in the order it prints them."""
    env = facts.environment
    out = [Finding("python", f"{facts.python} on {facts.machine}")]
    if facts.jetson:
        out.append(Finding("board", f"{env.get('device_model', UNKNOWN)}: {jetpack_line(env)}; CUDA"
                                    f" {env.get('cuda', UNKNOWN)}"))
        out.append(Finding("power", f"mode {env.get('power_mode', UNKNOWN)} (id {env.get('power_mode_id', UNKNOWN)});"
                                    f" clocks CPU {env.get('cpu_mhz', UNKNOWN)} MHz, GPU {env.get('gpu_mhz', UNKNOWN)}"
                                    " MHz"))
    out += _torch_findings(facts) + _ort_findings(facts)
    trt = f"TensorRT {facts.tensorrt}" if facts.tensorrt else "TensorRT not importable"
    out.append(Finding("tensorrt", trt + (f": its cases are skipped ({facts.tensorrt_reason})"
                                          if facts.tensorrt_reason else ": its cases run")))
    if facts.jetson or facts.jtop_client or facts.jtop_service:
        says = f"jtop client {facts.jtop_client or 'not installed'}, service {facts.jtop_service or 'not found'}"
        if facts.jtop_client and facts.jtop_service and facts.jtop_client != facts.jtop_service:
            out.append(Finding("jtop", says, "client and service versions differ: jtop refuses to connect and the"
                               " telemetry falls back to sysfs", f"pip install {JTOP_DISTRIBUTION}=={facts.jtop_service}"))
        else:
            out.append(Finding("jtop", says))
    if facts.kernel_probe:
        out.append(Finding("cpu int8", facts.kernel_probe))
    return out


def render(found: Sequence[Finding]) -> Tuple[str, int]:
    """The report text and the exit status (1 when any finding is fatal)."""
    lines, fatal = [], False
    for item in found:
        if item.problem is None:
            lines.append(f"  {item.topic:<12} {item.says}")
        else:
            fatal = fatal or item.fatal
            mark = "ERROR" if item.fatal else "note"
            lines.append(f"  {item.topic:<12} {mark}: {item.problem}; fix: {item.fix}")
    verdict = ("a run here would measure something other than it says (ERROR lines above)" if fatal
               else "a run here measures what its records say")
    return "\n".join(["ptqcore doctor:", *lines, f"ptqcore doctor: {verdict}"]), int(fatal)


# -- reading this machine -------------------------------------------------------------------------
def _where(path: str) -> str:
    """A module file's folder, and whether it is this environment's or the system's."""
    module, prefix = Path(path).resolve(), Path(sys.prefix).resolve()
    inside = os.path.commonpath([str(module), str(prefix)]) == str(prefix)
    return f"{module.parent} ({'this environment' if inside else 'outside this environment: system packages'})"


def _torch_facts() -> Optional[TorchFacts]:
    try:
        import torch
    except ImportError:
        return None
    available = bool(torch.cuda.is_available())
    capability = None
    if available:
        major, minor = torch.cuda.get_device_capability(0)
        capability = f"sm_{major}{minor}"
    numpy_error = None
    try:
        import numpy

        torch.from_numpy(numpy.zeros(1, dtype=numpy.float32))
    except Exception as err:  # the failure is the finding
        numpy_error = " ".join(str(err).split())[:160] or type(err).__name__
    return TorchFacts(torch.__version__, _where(torch.__file__), torch.version.cuda, available,
                      tuple(torch.cuda.get_arch_list()) if torch.version.cuda else (), capability, numpy_error)


def _ort_facts() -> Optional[OrtFacts]:
    try:
        import onnxruntime
    except ImportError:
        return None
    module = Path(onnxruntime.__file__).resolve()
    installed, active = [], None
    for name in ORT_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        installed.append(name)
        for item in dist.files or ():
            if str(item).replace("\\", "/") == "onnxruntime/__init__.py" and Path(dist.locate_file(item)).resolve() == module:
                active = name
    return OrtFacts(onnxruntime.__version__, _where(onnxruntime.__file__), active, tuple(installed),
                    tuple(onnxruntime.get_available_providers()))


def jtop_service_version(root: Path) -> Optional[str]:
    """The jetson-stats version installed system-wide (what the ``jtop.service`` daemon runs), or None."""
    for folder in ("usr/local/lib", "usr/lib"):
        for info in sorted((root / folder).glob("python3*/dist-packages/jetson_stats-*.dist-info")):
            match = re.match(r"jetson_stats-(.+)\.dist-info$", info.name)
            if match:
                return match.group(1)
    return None


def is_jetson(root: Path, env: Mapping[str, object]) -> bool:
    return (root / "etc/nv_tegra_release").is_file() or "jetson" in str(env.get("device_model", "")).lower()


def gather(root: Path = Path("/"), probe_kernels: bool = True) -> Facts:
    """The :class:`Facts` of this machine (imports torch, onnxruntime and, if present, tensorrt)."""
    from ptqcore.backends import tensorrt_unavailable_reason

    env = collect_environment(root)
    trt_reason = tensorrt_unavailable_reason()
    try:
        import tensorrt

        trt_version: Optional[str] = str(tensorrt.__version__)
    except Exception:  # not installed, or its libraries do not load: the reason says which
        trt_version = None
    probe = ""
    if probe_kernels:
        from ptqcore.build.kernel_probe import probe_summary, probe_this_cpu
        from ptqcore.cpu_isa import detect_cpu_isa

        probe = probe_summary(detect_cpu_isa(), probe_this_cpu())
    numpy_version = installed_version("numpy")
    return Facts(platform.machine(), platform.python_version(), env, is_jetson(root, env), numpy_version,
                 _torch_facts(), _ort_facts(), trt_version, trt_reason, installed_version(JTOP_DISTRIBUTION),
                 jtop_service_version(root), probe)


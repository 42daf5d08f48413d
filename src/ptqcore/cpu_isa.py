"""The CPU's INT8 dot-product support, the ONNX Runtime INT8 recipe that is right for it, and its
physical core count (:func:`physical_cores`, the default thread count).

ONNX Runtime's quantization guide (docs/performance/model-optimizations/quantization.md,
"Data type selection" and the FAQ "When to use reduce-range and per-channel quantization?"):

* on x86-64 with AVX2 / AVX-512 but **without VNNI**, the U8S8 kernels use ``VPMADDUBSW``, whose
  16-bit intermediate sums saturate; reduce-range (7-bit weights) "is designed for the U8S8
  format on AVX2 and AVX512 (non-VNNI) machines to mitigate saturation issues", and with
  per-channel weights "you will generally need to enable reduce-range as well";
* "There is no such issue on other CPU architectures (x64 with VNNI and ARM)";
* "S8S8 with QDQ is the default setting ... It should be the first choice" (ARM64).

On x86 with VNNI, U8S8 runs 2.7-4.1x faster than S8S8 (measured: README, "INT8 on different CPUs"), so it
stays the x86 choice there. :func:`recipe_for_isa` is a pure function of the detected flags so
that every CPU family is unit-tested on recorded flag sets. The flags can be wrong about the CPU
the kernels run on (qemu shows the host's): ``auto`` (:func:`ptqcore.build.kernel_probe.resolve_recipe`)
also asks the kernels, through the self-test of :mod:`ptqcore.build.kernel_probe`, which sits above this
module (it imports from here, never the other way).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import FrozenSet, Iterable

#: x86 flags (as /proc/cpuinfo spells them) that give ONNX Runtime saturation-free INT8 dot products.
X86_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
#: ARM64 features (/proc/cpuinfo "Features") for INT8 dot products (SDOT/UDOT) and matrix multiply.
ARM_INT8_DOT_FLAGS = ("asimddp", "i8mm")
#: The INT8 layouts ptqcore can build for ONNX Runtime, and ``auto`` = chosen by :func:`recipe_for_isa`.
INT8_RECIPES = ("u8s8", "s8s8", "u8s8-reduce-range")
INT8_RECIPE_CHOICES = ("auto",) + INT8_RECIPES

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM64 = ("aarch64", "arm64", "armv8l")


@dataclass(frozen=True)
class CpuIsa:
    """What this CPU offers INT8 inference: ``family`` (x86 / arm64 / other), the INT8 dot-product
    flags it has (``int8_dot_flags``), and a short ``name`` such as ``x86-avx512_vnni`` or
    ``x86-no-vnni`` that records and reports carry."""

    arch: str
    family: str
    int8_dot_flags: tuple
    source: str

    @property
    def has_int8_dot(self) -> bool:
        return bool(self.int8_dot_flags)

    @property
    def name(self) -> str:
        if self.family == "x86":
            return "x86-" + ("+".join(self.int8_dot_flags) if self.int8_dot_flags else "no-vnni")
        if self.family == "arm64":
            return "arm64-" + ("+".join(self.int8_dot_flags) if self.int8_dot_flags else "no-dotprod")
        return f"{self.family}-{self.arch or 'unknown'}"

    def as_dict(self) -> dict:
        return {**asdict(self), "int8_dot_flags": list(self.int8_dot_flags), "name": self.name,
                "has_int8_dot": self.has_int8_dot}


def isa_from_flags(arch: str, flags: Iterable[str], source: str = "given") -> CpuIsa:
    """The :class:`CpuIsa` of a CPU of architecture ``arch`` (``platform.machine()``) with ``flags``."""
    arch = (arch or "").lower()
    present: FrozenSet[str] = frozenset(flag.strip().lower() for flag in flags)
    if arch in _X86:
        family, wanted = "x86", X86_INT8_DOT_FLAGS
    elif arch in _ARM64:
        family, wanted = "arm64", ARM_INT8_DOT_FLAGS
    else:
        family, wanted = "other", ()
    return CpuIsa(arch, family, tuple(flag for flag in wanted if flag in present), source)


def recipe_for_isa(isa: CpuIsa) -> str:
    """The ONNX Runtime INT8 layout its quantization guide recommends for ``isa`` (module docstring).

    x86 with VNNI / AVX-VNNI / AMX: ``u8s8``; x86 without: ``u8s8-reduce-range``; ARM64 (with or
    without dot product, both saturation-free): ``s8s8``; anything else: ``u8s8-reduce-range``,
    which is exact enough everywhere.
    """
    if isa.family == "x86":
        return "u8s8" if isa.has_int8_dot else "u8s8-reduce-range"
    if isa.family == "arm64":
        return "s8s8"
    return "u8s8-reduce-range"


def _proc_cpuinfo_flags(text: str) -> FrozenSet[str]:
    """Flags of the first processor in /proc/cpuinfo text (x86 ``flags``, ARM ``Features``)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def detect_cpu_isa() -> CpuIsa:
    """This machine's :class:`CpuIsa`, read once per process from /proc/cpuinfo, else py-cpuinfo
    (pytest-benchmark's own dependency), else no flags (``source`` says which)."""
    arch = platform.machine()
    try:
        flags = _proc_cpuinfo_flags(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        flags = frozenset()
    if flags:
        return isa_from_flags(arch, flags, "/proc/cpuinfo")
    try:
        import cpuinfo

        flags = frozenset(cpuinfo.get_cpu_info().get("flags", ()))
    except Exception:  # py-cpuinfo probes the CPU in many ways; any failure just means "no flags"
        flags = frozenset()
    return isa_from_flags(arch, flags, "py-cpuinfo" if flags else "none")


def physical_cores() -> int:
    """Physical CPU cores (psutil), else logical ones: the default thread count of both runtimes, so
    that ONNX Runtime and PyTorch are timed with the same, recorded number of threads."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1

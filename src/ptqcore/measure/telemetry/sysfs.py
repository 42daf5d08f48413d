"""Readers for the Linux sysfs and debugfs files that telemetry needs, relative to a ``root``.

Every reader takes ``root`` (``/`` on a real machine, a fake tree in tests) and returns None for a
value it cannot read: a missing file, one only root may read, or text that is not a number. The
callers decide what "unavailable" means; nothing here returns 0 for "not there".

Files (Jetson paths by JetPack generation):

================  =====================================================================
GPU load          ``/sys/devices/gpu.0/load`` (Nano, TX2, Xavier), ``/sys/devices/platform/gpu.0/load``
                  (Xavier, Orin on JetPack 5), ``/sys/devices/platform/bus@0/17000000.gpu/load``
                  (Orin on JetPack 6), else ``/sys/class/devfreq/<gpu node>/device/load``;
                  per mille (0..1000)
GPU clock         ``/sys/class/devfreq/<gpu node>/cur_freq`` in Hz
CPU clocks        ``/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq`` in kHz
EMC clock         ``/sys/kernel/debug/bpmp/debug/clk/emc/rate`` (Xavier, Orin; debugfs, root
                  only), ``/sys/kernel/debug/clk/emc/clk_rate`` (Nano, TX2),
                  ``/sys/class/devfreq/bwmgr/cur_freq`` (Thor); Hz
temperatures      ``/sys/class/thermal/thermal_zone*/{type,temp}``, milli-degrees C; a zone that
                  reads -256 C or less is a sensor that is off (Orin's CV0..CV2, GPU when gated)
================  =====================================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional

from ptqcore.environment import GPU_DEVFREQ_NAMES, UNKNOWN, read_cpu_mhz, read_gpu_mhz

GPU_LOAD_FILES = (
    "sys/devices/gpu.0/load",
    "sys/devices/platform/gpu.0/load",
    "sys/devices/platform/bus@0/17000000.gpu/load",
)
EMC_RATE_FILES = (
    "sys/kernel/debug/bpmp/debug/clk/emc/rate",
    "sys/kernel/debug/clk/emc/clk_rate",
    "sys/class/devfreq/bwmgr/cur_freq",
)
#: A thermal zone at or below this many degrees C is switched off, not cold.
OFFLINE_TEMP_C = -200.0


def read_text(path: Path) -> Optional[str]:
    """The stripped text of ``path``, or None when it cannot be read."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def read_number(path: Path) -> Optional[float]:
    """The first whitespace-separated field of ``path`` as a number (``"32760 ma"`` -> 32760), or None."""
    text = read_text(path)
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def read_error(path: Path) -> Optional[str]:
    """Why ``path`` cannot be read (``"Permission denied"``, ...), or None when it can."""
    try:
        path.read_bytes()
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def key_part(name: str) -> str:
    """``"VDD_CPU_GPU_CV"`` -> ``"VDD_CPU_GPU_CV"``, ``"package-0"`` -> ``"package_0"``: safe inside a reading's key."""
    return re.sub(r"\W+", "_", name.strip()).strip("_")


def gpu_devfreq_nodes(root: Path) -> List[Path]:
    """The devfreq nodes of an integrated (Jetson) GPU, by node name."""
    devfreq = root / "sys/class/devfreq"
    return [node for node in sorted(devfreq.glob("*")) if any(name in node.name for name in GPU_DEVFREQ_NAMES)]


def gpu_load_file(root: Path) -> Optional[Path]:
    """The first readable GPU load file (per mille), or None."""
    candidates = [root / path for path in GPU_LOAD_FILES] + [node / "device/load" for node in gpu_devfreq_nodes(root)]
    return next((path for path in candidates if read_number(path) is not None), None)


def gpu_load_percent(path: Path) -> Optional[float]:
    """The GPU load in percent from a per-mille load file, or None."""
    permille = read_number(path)
    return None if permille is None else permille / 10.0


def gpu_mhz(root: Path) -> Optional[float]:
    """The integrated GPU's current clock in MHz (from :mod:`ptqcore.environment`'s reader), or None."""
    mhz = read_gpu_mhz(root / "sys/class/devfreq")
    return None if mhz == UNKNOWN else float(mhz)


def online_cpufreq_dirs(root: Path) -> List[Path]:
    """``cpu<N>/cpufreq`` folders of the CPUs that are online and have one, in CPU order."""
    cpus = root / "sys/devices/system/cpu"
    dirs = [path for path in cpus.glob("cpu[0-9]*/cpufreq") if path.parent.name[3:].isdigit()]
    online = [path for path in dirs if read_text(path.parent / "online") != "0"]
    return sorted(online, key=lambda path: int(path.parent.name[3:]))


def cpu_mhz_max(root: Path) -> Optional[float]:
    """The highest current clock among the CPUs, in MHz (idle cores sit lower), or None."""
    clocks = read_cpu_mhz(root / "sys/devices/system/cpu")
    return None if clocks == UNKNOWN else float(max(clocks.values()))


def emc_mhz(root: Path) -> Optional[float]:
    """The memory controller's clock in MHz from the first readable EMC file, or None."""
    for relative in EMC_RATE_FILES:
        hz = read_number(root / relative)
        if hz is not None:
            return hz / 1e6
    return None


def thermal_zones(root: Path) -> Dict[str, float]:
    """Zone name -> degrees C of every zone that is on; names are the lowercased ``type`` less ``-thermal``.

    A second zone of the same type is named ``<type>_1``, a third ``<type>_2``, and so on.
    """
    zones = sorted(
        (root / "sys/class/thermal").glob("thermal_zone*"),
        key=lambda path: int(path.name[len("thermal_zone") :]) if path.name[len("thermal_zone") :].isdigit() else -1,
    )
    temps: Dict[str, float] = {}
    for zone in zones:
        kind, milli = read_text(zone / "type"), read_number(zone / "temp")
        if not kind or milli is None or milli / 1000.0 <= OFFLINE_TEMP_C:
            continue
        name = key_part(re.sub(r"[-_]therm(al)?$", "", kind, flags=re.IGNORECASE).lower())
        unique, n = name, 0
        while unique in temps:
            n += 1
            unique = f"{name}_{n}"
        temps[unique] = milli / 1000.0
    return temps

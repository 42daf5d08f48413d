"""The machine's state around a measured window, and whether the window was steady.

:func:`machine_state` reads files only, under ``root`` (tests use fake trees), like
:mod:`ptqcore.environment`, and writes ``"unknown"`` for what it cannot read:

=================  ===================================================================
``power_mode``     nvpmodel's current mode (``/var/lib/nvpmodel/status``) and its name in
                   ``/etc/nvpmodel.conf``, with ``power_mode_id``
``jetson_clocks``  True when every online CPU and the Jetson GPU are pinned at their maximum
                   (jetson_clocks sets each minimum clock to the maximum: ``scaling_min_freq ==
                   scaling_max_freq == scaling_cur_freq`` in cpufreq, ``min_freq == max_freq ==
                   cur_freq`` in the GPU's devfreq); False when one is not; unknown off Jetson
``cpu_mhz``        current clock per CPU; ``gpu_mhz``, ``emc_mhz`` (debugfs: root only)
``temperatures_c`` every thermal zone that is on
=================  ===================================================================

:func:`stability_flags` says whether a window was steady: throttling (a clock fell more than
``max_clock_drop`` below its running peak) and instability (latency coefficient of variation
above ``max_cv``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ptqcore.environment import UNKNOWN, read_cpu_mhz, read_power_mode
from ptqcore.measure.stats import LatencyStats
from ptqcore.measure.telemetry import sysfs

#: Defaults: a clock 10% below its peak is a drop; latency CV above 0.1 is an unsteady window.
MAX_CLOCK_DROP = 0.10
MAX_CV = 0.10


def machine_state(root: Path = Path("/")) -> Dict[str, object]:
    """The facts in the module docstring, read under ``root``."""
    root = Path(root)
    mode_id, mode_name = read_power_mode(
        sysfs.read_text(root / "var/lib/nvpmodel/status"), sysfs.read_text(root / "etc/nvpmodel.conf")
    )
    pinned, detail = jetson_clocks_state(root)
    gpu, emc = sysfs.gpu_mhz(root), sysfs.emc_mhz(root)
    return {
        "power_mode": mode_name,
        "power_mode_id": mode_id,
        "jetson_clocks": pinned,
        "jetson_clocks_detail": detail,
        "cpu_mhz": read_cpu_mhz(root / "sys/devices/system/cpu"),
        "gpu_mhz": UNKNOWN if gpu is None else gpu,
        "emc_mhz": UNKNOWN if emc is None else emc,
        "temperatures_c": sysfs.thermal_zones(root),
    }


def _clock_domains(root: Path) -> List[Tuple[str, Optional[float], Optional[float], Optional[float]]]:
    """(name, min, max, current) of each online CPU's cpufreq and of the Jetson GPU's devfreq."""
    domains = [
        (path.parent.name, *(sysfs.read_number(path / f"scaling_{kind}_freq") for kind in ("min", "max", "cur")))
        for path in sysfs.online_cpufreq_dirs(root)
    ]
    domains += [
        (f"gpu {node.name}", *(sysfs.read_number(node / f"{kind}_freq") for kind in ("min", "max", "cur")))
        for node in sysfs.gpu_devfreq_nodes(root)
    ]
    return domains


def jetson_clocks_state(root: Path) -> Tuple[object, str]:
    """(True / False / ``"unknown"``, why) — see ``jetson_clocks`` in the module docstring."""
    if not sysfs.gpu_devfreq_nodes(root):
        return UNKNOWN, "no Jetson GPU devfreq node: not a Jetson"
    domains = _clock_domains(root)
    unreadable = [name for name, *clocks in domains if None in clocks]
    if unreadable:
        return UNKNOWN, "clock files not readable for " + ", ".join(unreadable)
    loose = [name for name, low, high, current in domains if not low == high == current]
    if loose:
        return False, "not pinned at their maximum: " + ", ".join(loose)
    return True, f"{len(domains)} clock domains pinned at their maximum"


def max_drawdown(values: Sequence[float]) -> float:
    """Largest fall below the running maximum, as a fraction of that maximum (0 for a rising series)."""
    peak, worst = None, 0.0
    for value in values:
        peak = value if peak is None else max(peak, value)
        if peak and peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def stability_flags(
    samples: Iterable,
    latencies_s: Optional[Sequence[float]] = None,
    max_clock_drop: float = MAX_CLOCK_DROP,
    max_cv: float = MAX_CV,
) -> dict:
    """Throttling and instability of a window, JSON-ready.

    ``samples`` are the monitor's samples of the window (objects with ``readings``: source ->
    {key: value}, in time order); every ``*_mhz`` reading is a clock. ``throttling`` is True
    when one clock fell more than ``max_clock_drop`` below its running peak (a rise, e.g. DVFS
    ramping up, is not a drop; on unpinned clocks DVFS falls count too: the clocks were not
    steady, whatever the cause), None without clock readings. ``unstable`` is True when the
    latency coefficient of variation exceeds ``max_cv``, None without two latencies.
    """
    clocks: Dict[str, List[float]] = {}
    for sample in samples:
        for source, readings in sample.readings.items():
            for key, value in readings.items():
                if key.endswith("_mhz"):
                    clocks.setdefault(f"{source}.{key}", []).append(value)
    drops = {name: max_drawdown(values) for name, values in sorted(clocks.items())}
    cv = LatencyStats.from_seconds(latencies_s, 1).cv if latencies_s and len(latencies_s) >= 2 else None
    return {
        "throttling": any(drop > max_clock_drop for drop in drops.values()) if drops else None,
        "clock_drop": drops,
        "max_clock_drop": max_clock_drop,
        "unstable": None if cv is None else cv > max_cv,
        "latency_cv": cv,
        "max_cv": max_cv,
    }

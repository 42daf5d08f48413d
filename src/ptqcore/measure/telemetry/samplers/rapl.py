"""CPU package energy on x86 through RAPL (``/sys/class/powercap/intel-rapl:*``, Intel and AMD).

Each zone has ``name`` (``package-0``, ``dram``, ``core``, ``uncore``, ``psys``), ``energy_uj`` (a
counter in microjoules that wraps around at ``max_energy_range_uj``). Since Linux 5.10
``energy_uj`` is readable by root only (CVE-2020-8694): then this sampler is unavailable with
that reason, never a 0.

Readings: ``energy_j``, the energy of all ``package-*`` zones since the first sample (the
counters unwrapped, so it only grows), and ``energy_j_<zone>`` for every zone (sub-zones as
``<parent>_<zone>``, e.g. ``energy_j_package_0_dram``). ``psys`` (the whole platform, on some
laptops) overlaps the packages and is never added to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ptqcore.measure.telemetry import sysfs
from ptqcore.measure.telemetry.energy import counter_increment
from ptqcore.measure.telemetry.samplers.base import Readings, Sampler

POWERCAP = "sys/class/powercap"


class _Zone:
    def __init__(self, path: Path, max_range_uj: Optional[float]) -> None:
        self.path, self.max_range_uj = path, max_range_uj
        self.last_uj: Optional[float] = None
        self.total_uj = 0.0

    def advance(self) -> float:
        """Read the counter; return the unwrapped microjoules since the first read."""
        raw = sysfs.read_number(self.path / "energy_uj")
        if raw is None:
            raise RuntimeError(f"{self.path / 'energy_uj'} became unreadable")
        if self.last_uj is not None:
            self.total_uj += counter_increment(self.last_uj, raw, self.max_range_uj)
        self.last_uj = raw
        return self.total_uj


def _zones(root: Path) -> List[Tuple[Path, str, bool]]:
    """(zone folder, key suffix, is a package) of every RAPL zone, top-level zones first."""
    found = []
    for path in sorted((root / POWERCAP).glob("intel-rapl:*"), key=lambda p: (p.name.count(":"), p.name)):
        parts = path.name.split(":")[1:]
        name = sysfs.read_text(path / "name") or path.name
        if len(parts) == 1:
            found.append((path, sysfs.key_part(name), name.startswith("package")))
        else:
            parent = sysfs.read_text(path.parent / f"intel-rapl:{parts[0]}" / "name") or f"zone_{parts[0]}"
            found.append((path, sysfs.key_part(f"{parent}_{name}"), False))
    return found


class RaplSampler(Sampler):
    """RAPL energy counters under ``root``."""

    name = "rapl"
    power_domain = "cpu-packages"

    def __init__(self, root: Path = Path("/")) -> None:
        super().__init__()
        self.root = Path(root)
        self._zones: Dict[str, _Zone] = {}
        self._packages: List[str] = []

    def available(self) -> Optional[str]:
        zones = _zones(self.root)
        if not zones:
            return f"no RAPL zones under {self.root / POWERCAP} (not x86, or the powercap driver is not loaded)"
        for path, key, _package in zones:
            error = sysfs.read_error(path / "energy_uj")
            if error:
                return f"{path / 'energy_uj'} is not readable ({error}): RAPL is root-only since Linux 5.10"
            self._zones[key] = _Zone(path, sysfs.read_number(path / "max_energy_range_uj"))
        self._packages = [key for _path, key, package in zones if package]
        if self._packages:
            self.notes["energy_j"] = "sum of RAPL zones " + "+".join(self._packages)
        else:
            self.missing["energy_j"] = "no package-* RAPL zone"
        return None

    def sample(self) -> Readings:
        totals = {key: zone.advance() / 1e6 for key, zone in self._zones.items()}
        readings: Readings = {f"energy_j_{key}": joules for key, joules in totals.items()}
        if self._packages:
            readings["energy_j"] = sum(totals[key] for key in self._packages)
        return readings

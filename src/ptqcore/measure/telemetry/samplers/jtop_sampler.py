"""A Jetson board through jetson-stats (``from jtop import jtop``), when its service runs.

jtop is a client of the root service ``jtop.service`` behind the socket ``/run/jtop.sock``; without
the socket this sampler is unavailable. The service's refresh interval is shared by all its
clients and is unstable below 0.5 s, so ``interval_s`` is raised to 0.5 s at least; between two
refreshes ``sample()`` returns the same values again (a hold).

Readings (jetson-stats 4.x to 7.x layout): ``power_w`` from ``power['tot']['power']`` (mW, the
instantaneous total: the input rail, or jtop's sum of rails where the board has none) and
``power_w_<RAIL>`` from ``power['rail'][RAIL]['power']``; jtop's ``avg`` fields are exponential
averages, not time averages, and are never used (the monitor integrates the instantaneous
values over its own windows). ``gpu_load_percent`` and ``gpu_mhz`` from the first entry of
``gpu`` (``status.load`` in %, ``freq.cur`` in kHz), ``memory_used_bytes`` from
``memory['RAM']['used']`` (kB), ``emc_mhz`` and ``emc_load_percent`` from ``memory['EMC']``,
``cpu_percent_system`` and ``cpu_mhz`` from ``cpu['cpu']`` (online cores: 100 - idle, max of
``freq.cur`` kHz), ``temp_c_<name>`` from ``temperature`` for sensors that are online.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Optional

from ptqcore.measure.telemetry.samplers.base import Readings, Sampler
from ptqcore.measure.telemetry.sysfs import OFFLINE_TEMP_C, key_part

SOCKET = "run/jtop.sock"
MIN_INTERVAL_S = 0.5


def _default_factory(interval_s: float):
    from jtop import jtop

    return jtop(interval=interval_s)


class JtopSampler(Sampler):
    """jtop readings; ``factory(interval_s)`` makes the jtop object (tests pass one that builds a fake)."""

    name = "jtop"
    power_domain = "jetson-board"

    def __init__(
        self, interval_s: float = MIN_INTERVAL_S, root: Path = Path("/"), factory: Optional[Callable] = None
    ) -> None:
        super().__init__()
        self.interval_s = max(float(interval_s), MIN_INTERVAL_S)
        self.root = Path(root)
        self._factory = factory
        self._jetson = None

    def available(self) -> Optional[str]:
        if self._factory is None:
            if importlib.util.find_spec("jtop") is None:
                return "jetson-stats is not installed (pip install ptqcore[jetson])"
            self._factory = _default_factory
        if not (self.root / SOCKET).exists():
            return f"{self.root / SOCKET} does not exist: the jtop service is not running"
        jetson = self._factory(self.interval_s)
        try:
            jetson.start()
        except Exception as err:  # JtopException and OS errors: the service cannot be reached
            return f"cannot connect to the jtop service: {err}"
        self._jetson = jetson
        self.notes["interval_s"] = f"jtop service refreshes every {getattr(jetson, 'interval', self.interval_s)} s"
        return None

    def sample(self) -> Readings:
        jetson = self._jetson
        if not jetson.ok(spin=True):  # raises the jtop thread's error, if it had one
            raise RuntimeError("the jtop connection closed")
        readings: Readings = {}
        readings.update(self._power(jetson.power))
        readings.update(self._gpu(jetson.gpu))
        readings.update(self._memory(jetson.memory))
        readings.update(self._cpu(jetson.cpu))
        for name, sensor in jetson.temperature.items():
            if sensor.get("online", True) and sensor.get("temp", OFFLINE_TEMP_C) > OFFLINE_TEMP_C:
                readings[f"temp_c_{key_part(name.lower())}"] = float(sensor["temp"])
        return readings

    def _power(self, power) -> Readings:
        if not power:
            self.missing["power_w"] = "jtop found no power monitor on this board"
            return {}
        readings = {
            f"power_w_{key_part(name)}": rail["power"] / 1000.0
            for name, rail in power.get("rail", {}).items()
            if "power" in rail
        }
        total = power.get("tot", {})
        if "power" in total:
            readings["power_w"] = total["power"] / 1000.0
            self.notes["power_w"] = (
                f"input rail {total['name']}" if "name" in total else "jtop's sum of all rails (no input rail)"
            )
        return readings

    @staticmethod
    def _gpu(gpus) -> Readings:
        first = next(iter(gpus.values()), None) if gpus else None
        if not first:
            return {}
        readings: Readings = {}
        if "load" in first.get("status", {}):
            readings["gpu_load_percent"] = float(first["status"]["load"])
        if "cur" in first.get("freq", {}):
            readings["gpu_mhz"] = first["freq"]["cur"] / 1000.0
        return readings

    @staticmethod
    def _memory(memory) -> Readings:
        readings: Readings = {}
        if "RAM" in memory:
            readings["memory_used_bytes"] = float(memory["RAM"]["used"]) * 1024.0
        emc = memory.get("EMC", {})
        if emc.get("online", True) and "cur" in emc:
            readings["emc_mhz"] = emc["cur"] / 1000.0
            if "val" in emc:
                readings["emc_load_percent"] = float(emc["val"])
        return readings

    @staticmethod
    def _cpu(cpu) -> Readings:
        cores = [core for core in cpu.get("cpu", []) if core.get("online")]
        readings: Readings = {}
        loads = [100.0 - float(core["idle"]) for core in cores if "idle" in core]
        if loads:
            readings["cpu_percent_system"] = sum(loads) / len(loads)
        clocks = [core["freq"]["cur"] / 1000.0 for core in cores if "cur" in core.get("freq", {})]
        if clocks:
            readings["cpu_mhz"] = max(clocks)
        return readings

    def close(self) -> None:
        jetson, self._jetson = self._jetson, None
        if jetson is not None:
            jetson.close()

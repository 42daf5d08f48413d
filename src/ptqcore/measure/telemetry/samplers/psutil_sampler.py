"""CPU and memory of this process and of the machine, through psutil (works everywhere).

Readings: ``cpu_percent_process`` (CPU time of the process over wall time since the previous
sample, in percent of one core: 200 means two cores busy), ``cpu_percent_system`` (busy share of
all CPUs since the previous sample, 0..100), ``rss_bytes`` (the process's resident set) and
``memory_used_bytes`` (total - available: memory that new processes cannot have).

The percentages come from this sampler's own CPU-time deltas, not ``psutil.cpu_percent()``,
whose state is shared with any other caller in the process. They are left out when less than
``MIN_CPU_WINDOW_S`` passed since the previous sample: such a window is mostly rounding.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from ptqcore.measure.telemetry.samplers.base import Readings, Sampler

#: CPU times tick in 10 ms jiffies: a 100 ms window keeps one tick within 10% of a core, so peaks
#: are not artefacts of two samples taken a few milliseconds apart at a phase edge.
MIN_CPU_WINDOW_S = 0.1


class PsutilSampler(Sampler):
    """psutil readings of process ``pid`` (default: this one); ``psutil_module`` replaces the import in tests."""

    name = "psutil"

    def __init__(
        self, pid: Optional[int] = None, psutil_module=None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        super().__init__()
        self.pid = os.getpid() if pid is None else pid
        self._psutil = psutil_module
        self._clock = clock
        self._process = None
        self._last = None  # (wall time, process cpu seconds, system busy seconds, system total seconds)

    def available(self) -> Optional[str]:
        if self._psutil is None:
            try:
                import psutil
            except ImportError:
                return "psutil is not installed (pip install psutil)"
            self._psutil = psutil
        try:
            self._process = self._psutil.Process(self.pid)
            self._last = self._cpu_times()
        except self._psutil.Error as err:
            return f"cannot read process {self.pid}: {err}"
        return None

    def _cpu_times(self):
        process = self._process.cpu_times()
        system = self._psutil.cpu_times()
        # guest time is already inside user and nice on Linux (psutil's cpu_percent subtracts it too)
        total = sum(system) - getattr(system, "guest", 0.0) - getattr(system, "guest_nice", 0.0)
        idle = system.idle + getattr(system, "iowait", 0.0)
        return self._clock(), process.user + process.system, total - idle, total

    def sample(self) -> Readings:
        now = self._cpu_times()
        readings: Readings = {
            "rss_bytes": float(self._process.memory_info().rss),
        }
        memory = self._psutil.virtual_memory()
        readings["memory_used_bytes"] = float(memory.total - memory.available)
        wall = now[0] - self._last[0]
        if wall >= MIN_CPU_WINDOW_S:
            readings["cpu_percent_process"] = 100.0 * max(0.0, now[1] - self._last[1]) / wall
            system_total = now[3] - self._last[3]
            if system_total > 0:
                readings["cpu_percent_system"] = min(100.0, 100.0 * max(0.0, now[2] - self._last[2]) / system_total)
            self._last = now
        return readings

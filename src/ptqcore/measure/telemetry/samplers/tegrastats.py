"""A Jetson board through the output of ``tegrastats``, the fallback where jtop is absent.

:func:`parse_tegrastats` reads one line of JetPack 4, 5 or 6 (older and newer layouts differ:
``GR3D_FREQ 0%@[305]`` or ``GR3D_FREQ 55%@921`` or just ``GR3D_FREQ 0%`` when not run as root;
``VDD_IN 4428mW/4428mW`` or ``POM_5V_IN 2389/2389``; ``CPU [2%@729,off]`` or ``CPU [45%,34%]@1907``;
temperatures ``cpu@54.9C`` or ``CPU@44.5C``). Fields that a line lacks are left out. Of each rail's
``current/average`` pair only the current value is kept: the average is tegrastats' own running
mean since it started, not a mean over any window of ours. Sensors at -256 C are off and
skipped, and so is ``PMIC``, a fixed placeholder on Nano/TX boards.

:class:`TegrastatsSampler` runs ``tegrastats --interval <ms>`` (or reads lines given to it),
keeps the latest line, and returns its readings on ``sample()``: between two lines it returns
the same values again (a hold). tegrastats shows the EMC and GR3D clocks only to root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Optional

from ptqcore.measure.telemetry.samplers.base import Readings, Sampler
from ptqcore.measure.telemetry.samplers.rails import rail_readings, total_note
from ptqcore.measure.telemetry.sysfs import OFFLINE_TEMP_C, key_part

MIB = 1024 * 1024
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_TEMP = re.compile(r"\b([A-Za-z]\w*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
SKIPPED_SENSORS = ("pmic",)


def parse_tegrastats(line: str) -> Readings:
    """The readings of one tegrastats line (see the module docstring); {} for a line with none."""
    readings: Readings = {}
    match = _RAM.search(line)
    if match:
        readings["memory_used_bytes"] = float(int(match.group(1)) * MIB)
        readings["memory_total_bytes"] = float(int(match.group(2)) * MIB)
    match = _SWAP.search(line)
    if match:
        readings["swap_used_bytes"] = float(int(match.group(1)) * MIB)
    match = _CPU.search(line)
    if match:
        cores = [_CORE.fullmatch(entry.strip()) for entry in match.group(1).split(",")]
        online = [core for core in cores if core]
        if online:
            readings["cpu_percent_system"] = sum(float(core.group(1)) for core in online) / len(online)
            clocks = [int(clock) for clock in (core.group(2) or match.group(2) for core in online) if clock]
            if clocks:
                readings["cpu_mhz"] = float(max(clocks))
    match = _GR3D.search(line)
    if match:
        readings["gpu_load_percent"] = float(match.group(1))
        if match.group(2):
            readings["gpu_mhz"] = float(max(int(f) for f in match.group(2).split(",") if f))
    match = _EMC.search(line)
    if match:
        readings["emc_load_percent"] = float(match.group(1))
        if match.group(2):
            readings["emc_mhz"] = float(match.group(2))
    for name, celsius in _TEMP.findall(line):
        if float(celsius) > OFFLINE_TEMP_C and name.lower() not in SKIPPED_SENSORS:
            readings[f"temp_c_{key_part(name.lower())}"] = float(celsius)
    rails = {name: int(current) / 1000.0 for name, current, _average in _RAIL.findall(line)}
    readings.update(rail_readings(rails)[0])
    return readings


class TegrastatsSampler(Sampler):
    """Readings of the latest tegrastats line.

    ``lines`` replaces the subprocess (tests give recorded lines); otherwise ``executable`` is
    looked up on PATH (or under ``root``/usr/bin when ``root`` is not ``/``). ``available()``
    starts it and waits up to ``first_line_timeout_s`` for the first line.
    """

    name = "tegrastats"
    power_domain = "jetson-board"

    def __init__(
        self,
        interval_s: float = 0.5,
        executable: str = "tegrastats",
        root: Path = Path("/"),
        lines: Optional[Iterable[str]] = None,
        first_line_timeout_s: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.executable = executable
        self.root = Path(root)
        self._lines = lines
        self.first_line_timeout_s = 2.0 * interval_s + 2.0 if first_line_timeout_s is None else first_line_timeout_s
        self._process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None
        self._latest: Optional[Readings] = None
        self._first_line = threading.Event()
        self._lock = threading.Lock()

    def _find(self) -> Optional[str]:
        if self.root != Path("/"):
            candidate = self.root / "usr/bin" / self.executable
            return str(candidate) if candidate.exists() else None
        return shutil.which(self.executable)

    def available(self) -> Optional[str]:
        lines = self._lines
        if lines is None:
            executable = self._find()
            if executable is None:
                return f"{self.executable} not found (not a Jetson, or not on PATH)"
            interval_ms = str(max(1, round(self.interval_s * 1000)))
            try:
                self._process = subprocess.Popen(
                    [executable, "--interval", interval_ms],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    bufsize=1,
                )
            except OSError as err:
                return f"cannot run {executable}: {err}"
            lines = self._process.stdout
        self._reader = threading.Thread(target=self._read, args=(lines,), name="ptqcore-tegrastats", daemon=True)
        self._reader.start()
        if not self._first_line.wait(self.first_line_timeout_s):
            self.close()
            return f"{self.executable} printed no line in {self.first_line_timeout_s:g} s"
        return None

    def _read(self, lines: Iterable[str]) -> None:
        try:
            for line in lines:
                readings = parse_tegrastats(line)
                if not readings:
                    continue
                with self._lock:
                    self._latest = readings
                if not self._first_line.is_set():
                    rails = (name for name, _current, _average in _RAIL.findall(line))
                    self.notes["power_w"] = total_note(rails) or "no power rails in the tegrastats output"
                    self._first_line.set()
        except (OSError, ValueError):  # the pipe was closed by close(): nothing more to read
            return

    def sample(self) -> Readings:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"{self.executable} exited with code {self._process.returncode}")
        with self._lock:
            return dict(self._latest or {})

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None

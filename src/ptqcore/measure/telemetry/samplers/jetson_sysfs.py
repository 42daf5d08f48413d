"""A Jetson board read straight from sysfs: GPU load, power rails, clocks, temperatures.

The fallback where the jtop service is absent; it needs no root for the GPU load, the rails and
the temperatures (the EMC clock is in debugfs, root only). Power monitors, found under
``/sys/bus/i2c/drivers/<driver>/<bus-address>/``:

=========================  ===========================================================
JetPack 5 and 6, INA3221   ``hwmon/hwmon*/in<N>_label`` (rail name), ``in<N>_input`` (mV),
                           ``curr<N>_input`` (mA); channel 7 ("sum of shunt voltages") and
                           ``NC`` (not connected) channels are skipped
JetPack 4, INA3221x (iio)  ``iio:device*/rail_name_<N>``, ``in_power<N>_input`` (mW)
Thor, INA238               ``hwmon/hwmon*/power1_input`` (uW), the board input ``VIN``
=========================  ===========================================================

``power_w`` is the input rail where the board has one, else the sum of its module rails (see
:mod:`.rails`; ``notes['power_w']`` says which). See :mod:`ptqcore.measure.telemetry.sysfs` for the GPU
load, clock and thermal files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, Optional

from ptqcore.measure.telemetry import sysfs
from ptqcore.measure.telemetry.samplers.base import Readings, Sampler
from ptqcore.measure.telemetry.samplers.rails import rail_readings, total_note

RailReader = Callable[[], Optional[float]]
I2C_DRIVERS = "sys/bus/i2c/drivers"


def _product(*paths: Path, scale: float) -> RailReader:
    def read() -> Optional[float]:
        values = [sysfs.read_number(path) for path in paths]
        if any(value is None for value in values):
            return None
        product = scale
        for value in values:
            product *= value
        return product

    return read


def _hwmon_ina3221_rails(hwmon: Path) -> Dict[str, RailReader]:
    rails = {}
    for label in sorted(hwmon.glob("in*_label")):
        channel = re.match(r"in(\d+)_label$", label.name)
        name = sysfs.read_text(label)
        if not channel or not name or name == "NC" or channel.group(1) == "7" or name.lower().startswith("sum of"):
            continue
        n = channel.group(1)
        rails[name] = _product(hwmon / f"in{n}_input", hwmon / f"curr{n}_input", scale=1e-6)  # mV * mA -> W
    return rails


def _iio_ina3221x_rails(device: Path) -> Dict[str, RailReader]:
    rails = {}
    for label in sorted(device.glob("rail_name_*")):
        name = sysfs.read_text(label)
        if name and name != "NC":
            rails[name] = _product(device / f"in_power{label.name[len('rail_name_') :]}_input", scale=1e-3)  # mW -> W
    return rails


def _hwmon_ina238_rails(hwmon: Path) -> Dict[str, RailReader]:
    if sysfs.read_number(hwmon / "power1_input") is not None:
        return {"VIN": _product(hwmon / "power1_input", scale=1e-6)}  # uW -> W
    return {}


def find_rails(root: Path) -> Dict[str, RailReader]:
    """Rail name -> function returning its watts now (None if unreadable), over every power monitor found."""
    rails: Dict[str, RailReader] = {}
    for device in sorted((root / I2C_DRIVERS).glob("ina*/*")):
        driver = device.parent.name
        if driver.startswith("ina3221"):
            for hwmon in sorted(device.glob("hwmon/hwmon*")):
                rails.update(_hwmon_ina3221_rails(hwmon))
            for iio in sorted(device.glob("iio:device*")):
                rails.update(_iio_ina3221x_rails(iio))
        elif driver.startswith("ina238"):
            for hwmon in sorted(device.glob("hwmon/hwmon*")):
                rails.update(_hwmon_ina238_rails(hwmon))
    return rails


class JetsonSysfsSampler(Sampler):
    """Jetson readings from the files under ``root``: ``gpu_load_percent``, ``power_w``, ``power_w_<RAIL>``,
    ``gpu_mhz``, ``cpu_mhz``, ``emc_mhz``, ``temp_c_<zone>`` (each where its file is readable)."""

    name = "jetson-sysfs"
    power_domain = "jetson-board"

    def __init__(self, root: Path = Path("/")) -> None:
        super().__init__()
        self.root = Path(root)
        self._rails: Dict[str, RailReader] = {}
        self._gpu_load: Optional[Path] = None

    def available(self) -> Optional[str]:
        self._rails = find_rails(self.root)
        self._gpu_load = sysfs.gpu_load_file(self.root)
        if not self._rails and self._gpu_load is None:
            return f"no Jetson GPU load file and no INA3221/INA238 power monitor under {self.root / 'sys'}"
        if self._rails:
            self.notes["power_w"] = total_note(self._rails)
        else:
            self.missing["power_w"] = f"no INA3221/INA238 power monitor under {self.root / I2C_DRIVERS}"
        if self._gpu_load is None:
            self.missing["gpu_load_percent"] = "no readable GPU load file"
        else:
            self.notes["gpu_load_percent"] = str(self._gpu_load)
        if sysfs.emc_mhz(self.root) is None:
            self.missing["emc_mhz"] = "EMC clock not readable (debugfs needs root)"
        return None

    def sample(self) -> Readings:
        readings: Readings = {}
        if self._gpu_load is not None:
            load = sysfs.gpu_load_percent(self._gpu_load)
            if load is not None:
                readings["gpu_load_percent"] = load
        rails = {name: read() for name, read in self._rails.items()}
        known = {name: watts for name, watts in rails.items() if watts is not None}
        power, _ = rail_readings(known)
        if len(known) < len(rails):  # a total over fewer rails than usual would not be the same quantity
            power.pop("power_w", None)
        readings.update(power)
        for key, value in (
            ("gpu_mhz", sysfs.gpu_mhz(self.root)),
            ("cpu_mhz", sysfs.cpu_mhz_max(self.root)),
            ("emc_mhz", sysfs.emc_mhz(self.root)),
        ):
            if value is not None:
                readings[key] = value
        readings.update({f"temp_c_{zone}": temp for zone, temp in sysfs.thermal_zones(self.root).items()})
        return readings

"""Fakes of every telemetry source, shared by the tests/test_telemetry_*.py files.

Each fake says which version of the third-party API or of the board's file layout it mirrors.
"""

from pathlib import Path
from types import SimpleNamespace

from ptqcore.measure.telemetry import Sampler

DATA = Path(__file__).resolve().parent.parent / "data" / "tegrastats"


def write(root: Path, relative: str, text) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")
    return path


def tegrastats_lines(name: str):
    """The rows of tests/data/tegrastats/<name>.txt, comments left out."""
    text = (DATA / f"{name}.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


# -- fake sysfs trees ------------------------------------------------------------------------------
def ina3221_hwmon(root: Path, address: str, hwmon: str, channels) -> None:
    """An INA3221 as the hwmon driver of L4T R35 / R36 (JetPack 5 and 6) lays it out.

    ``channels`` is ``[(label, millivolts, milliamps), ...]`` for channels 1..3; channel 7, the
    "sum of shunt voltages", is always there too.
    """
    base = f"sys/bus/i2c/drivers/ina3221/{address}/hwmon/{hwmon}"
    write(root, f"sys/bus/i2c/drivers/ina3221/{address}/name", "ina3221")
    for n, (label, mv, ma) in enumerate(channels, start=1):
        write(root, f"{base}/in{n}_label", label)
        write(root, f"{base}/in{n}_input", mv)
        write(root, f"{base}/curr{n}_input", ma)
        write(root, f"{base}/curr{n}_max", 32760)
    write(root, f"{base}/in7_label", "sum of shunt voltages")
    write(root, f"{base}/in7_input", 3040)


def cpufreq(root: Path, cores, current_khz, min_khz, max_khz, offline=()) -> None:
    """``/sys/devices/system/cpu/cpu<N>/cpufreq/scaling_{cur,min,max}_freq`` (kHz), Linux cpufreq layout."""
    for n in range(cores):
        cpu = f"sys/devices/system/cpu/cpu{n}"
        write(root, f"{cpu}/online", 0 if n in offline else 1)
        if n in offline:
            continue
        write(root, f"{cpu}/cpufreq/scaling_cur_freq", current_khz)
        write(root, f"{cpu}/cpufreq/scaling_min_freq", min_khz)
        write(root, f"{cpu}/cpufreq/scaling_max_freq", max_khz)


def gpu_devfreq(root: Path, node: str, current_hz, min_hz, max_hz) -> None:
    """``/sys/class/devfreq/<node>/{cur,min,max}_freq`` in Hz, as nvgpu exposes it on L4T R32-R36."""
    for kind, hz in (("cur", current_hz), ("min", min_hz), ("max", max_hz)):
        write(root, f"sys/class/devfreq/{node}/{kind}_freq", hz)


def thermal(root: Path, zones) -> None:
    """``/sys/class/thermal/thermal_zone<N>/{type,temp}`` (milli-degrees C); -256000 is an offline sensor."""
    for n, (kind, milli) in enumerate(zones):
        write(root, f"sys/class/thermal/thermal_zone{n}/type", kind)
        write(root, f"sys/class/thermal/thermal_zone{n}/temp", milli)


def orin_nano_tree(root: Path, jetpack: int = 6, pinned: bool = False) -> Path:
    """An Orin Nano 8GB developer kit's files: JetPack 5 (L4T R35) or 6 (L4T R36) layout.

    Rails: VDD_IN 5072 mV x 1264 mA (6.410 W), VDD_CPU_GPU_CV 5064 mV x 200 mA, VDD_SOC 5064 mV x
    280 mA. GPU load 345 per mille. nvpmodel mode 0 (15W). ``pinned`` is what jetson_clocks leaves.
    """
    ina3221_hwmon(
        root,
        "1-0040",
        "hwmon3" if jetpack == 5 else "hwmon1",
        [("VDD_IN", 5072, 1264), ("VDD_CPU_GPU_CV", 5064, 200), ("VDD_SOC", 5064, 280)],
    )
    if jetpack == 5:
        write(root, "sys/devices/platform/gpu.0/load", 345)
        node = "17000000.ga10b"
    else:
        write(root, "sys/devices/platform/bus@0/17000000.gpu/load", 345)
        node = "17000000.gpu"
    top_gpu, top_cpu = 624750000, 1510400
    gpu_devfreq(root, node, top_gpu, top_gpu if pinned else 306000000, top_gpu)
    cpufreq(root, 6, top_cpu, top_cpu if pinned else 115200, top_cpu)
    write(root, "sys/kernel/debug/bpmp/debug/clk/emc/rate", 2133000000)
    thermal(root, [("cpu-thermal", 47500), ("gpu-thermal", 46000), ("cv0-thermal", -256000), ("tj-thermal", 48000)])
    write(root, "var/lib/nvpmodel/status", "pmode:0000 fmode:quiet")
    write(
        root,
        "etc/nvpmodel.conf",
        "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >",
    )
    return root


def agx_orin_rails(root: Path) -> Path:
    """AGX Orin's two INA3221 (L4T R35): no input rail, two NC channels."""
    ina3221_hwmon(
        root, "1-0040", "hwmon1", [("VDD_GPU_SOC", 5000, 480), ("VDD_CPU_CV", 5000, 80), ("VIN_SYS_5V0", 5000, 800)]
    )
    ina3221_hwmon(root, "1-0041", "hwmon2", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 60), ("NC", 0, 0)])
    return root


def nano_jp4_tree(root: Path) -> Path:
    """Jetson Nano on JetPack 4.6 (L4T R32): the ina3221x iio driver, power in mW, GPU load at /sys/devices/gpu.0."""
    iio = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for n, (name, mw) in enumerate([("POM_5V_IN", 2389), ("POM_5V_GPU", 0), ("POM_5V_CPU", 124)]):
        write(root, f"{iio}/rail_name_{n}", name)
        write(root, f"{iio}/in_power{n}_input", mw)
    write(root, "sys/devices/gpu.0/load", 0)
    return root


def thor_ina238(root: Path, microwatts: int) -> Path:
    """Thor's carrier-board INA238 (hwmon, ``power1_input`` in uW), as jetson-stats 7.2 reads it."""
    write(root, "sys/bus/i2c/drivers/ina238/2-0044/hwmon/hwmon5/power1_input", microwatts)
    write(root, "sys/bus/i2c/drivers/ina238/2-0044/hwmon/hwmon5/in1_input", 19200)
    return root


def rapl_tree(root: Path, zones) -> Path:
    """``/sys/class/powercap/intel-rapl:<i>[:<j>]/{name,energy_uj,max_energy_range_uj}`` (Linux powercap).

    ``zones`` is ``{"0": ("package-0", energy_uj, max_range_uj), "0:0": ("core", ...), ...}``.
    """
    for zone, (name, energy, max_range) in zones.items():
        base = f"sys/class/powercap/intel-rapl:{zone}"
        write(root, f"{base}/name", name)
        write(root, f"{base}/energy_uj", energy)
        write(root, f"{base}/max_energy_range_uj", max_range)
    return root


# -- fake jtop ----------------------------------------------------------------------------------
class FakeJtop:
    """A ``jtop.jtop`` object with the attribute layout of jetson-stats 7.2 (unchanged since 4.x).

    ``power``: ``{'rail': {name: {..., 'power': mW, 'avg': mW}}, 'tot': {..., 'power', 'avg', 'name'}}``;
    ``gpu``: ``{'gpu': {'type', 'status': {'load': %}, 'freq': {'cur': kHz, ...}}}``; ``memory``:
    ``{'RAM': {'used': kB, ...}, 'SWAP': ..., 'EMC': {'online', 'val': %, 'cur': kHz, ...}}``;
    ``cpu``: ``{'total': ..., 'cpu': [{'online', 'freq': {'cur': kHz}, 'idle': %, ...}]}``;
    ``temperature``: ``{name: {'online', 'temp'}}``; ``stats`` (flat); ``start()``, ``ok(spin)``,
    ``close()``, ``interval``. ``avg`` values are deliberately far from ``power`` so a test can
    tell which one was used.
    """

    def __init__(self, interval=0.5, start_error=None):
        self.interval = interval
        self.start_error = start_error
        self.started = self.closed = False
        self.running = True
        self.power = {
            "rail": {
                "VDD_CPU_GPU_CV": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5064,
                    "curr": 800,
                    "warn": 32760,
                    "crit": 32760,
                    "power": 4051,
                    "avg": 1200,
                },
                "VDD_SOC": {
                    "online": True,
                    "type": "INA3221",
                    "status": "ok",
                    "volt": 5064,
                    "curr": 420,
                    "warn": 32760,
                    "crit": 32760,
                    "power": 2126,
                    "avg": 1500,
                },
            },
            "tot": {
                "online": True,
                "type": "INA3221",
                "status": "ok",
                "volt": 5072,
                "curr": 1856,
                "warn": 32760,
                "crit": 32760,
                "power": 9413,
                "avg": 5210,
                "name": "VDD_IN",
            },
        }
        self.gpu = {
            "gpu": {
                "type": "integrated",
                "status": {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 96.3},
                "freq": {"governor": "nvhost_podgov", "cur": 624750, "max": 624750, "min": 306000, "GPC": [624750]},
                "power_control": "auto",
            }
        }
        self.memory = {
            "RAM": {
                "tot": 7620116,
                "used": 2859200,
                "free": 3100000,
                "buffers": 60000,
                "cached": 1500000,
                "shared": 120000,
                "lfb": 3,
            },
            "SWAP": {"tot": 3810056, "used": 226304, "cached": 0, "table": {}},
            "EMC": {"online": True, "val": 21, "cur": 2133000, "max": 2133000, "min": 204000, "override": 0},
        }
        core = {
            "online": True,
            "governor": "schedutil",
            "freq": {"min": 115200, "max": 1510400, "cur": 1510400},
            "user": 20.0,
            "nice": 0.0,
            "system": 5.0,
            "idle": 75.0,
            "model": "ARMv8 Processor rev 1 (v8l)",
        }
        self.cpu = {
            "total": {"user": 20.0, "nice": 0.0, "system": 5.0, "idle": 75.0},
            "cpu": [
                dict(core),
                dict(core, idle=25.0, freq={"min": 115200, "max": 1510400, "cur": 1190400}),
                {"online": False, "governor": "", "freq": {}, "info_freq": {}, "idle_state": {}, "model": ""},
            ],
        }
        self.temperature = {
            "cpu": {"online": True, "temp": 49.03},
            "cv0": {"online": False, "temp": -256.0},
            "gpu": {"online": True, "temp": 48.34},
        }

    @property
    def stats(self):
        return {
            "CPU1": 25,
            "CPU2": 75,
            "CPU3": "OFF",
            "RAM": 0.375,
            "GPU": 96.3,
            "Temp cpu": 49.03,
            "Power VDD_CPU_GPU_CV": 4051,
            "Power VDD_SOC": 2126,
            "Power TOT": 9413,
            "jetson_clocks": "OFF",
            "nvp model": "15W",
        }

    def start(self):
        if self.start_error is not None:
            raise self.start_error
        self.started = True

    def ok(self, spin=False):
        return self.running

    def close(self):
        self.closed = True


# -- fake NVML ----------------------------------------------------------------------------------
class NVMLError(Exception):
    """nvidia-ml-py's ``pynvml.NVMLError``: ``value`` is the NVML return code, ``str()`` its message."""

    MESSAGES = {2: "Invalid Argument", 3: "Not Supported", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found"}

    def __init__(self, value):
        super().__init__(value)
        self.value = value

    def __str__(self):
        return self.MESSAGES.get(self.value, f"Unknown Error {self.value}")


class NVMLError_NotSupported(NVMLError):  # the real module's name
    def __init__(self):
        super().__init__(3)


def fake_nvml(init_error=None, unsupported=(), devices=1, energy_mj=1_000_000, power_mw=250_000):
    """A module with the function names and units of nvidia-ml-py 12.x (``import pynvml``; unchanged in 13.x).

    Every call is logged in ``calls``; functions named in ``unsupported`` raise NotSupported, as
    NVML does on GPUs without that reading (e.g. ``nvmlDeviceGetTotalEnergyConsumption`` before Volta).
    ``state`` holds the values it returns, so a test can move them between samples.
    """
    state = SimpleNamespace(energy_mj=energy_mj, power_mw=power_mw, calls=[], shutdown=0)

    def api(name, result):
        def call(*args):
            state.calls.append(name)
            if name in unsupported:
                raise NVMLError_NotSupported()
            return result() if callable(result) else result

        return call

    def init():
        state.calls.append("nvmlInit")
        if init_error is not None:
            raise NVMLError(init_error)

    def shutdown():
        state.shutdown += 1

    module = SimpleNamespace(
        NVMLError=NVMLError,
        NVMLError_NotSupported=NVMLError_NotSupported,
        NVML_CLOCK_SM=1,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=init,
        nvmlShutdown=shutdown,
        nvmlDeviceGetCount=api("nvmlDeviceGetCount", devices),
        nvmlDeviceGetHandleByIndex=api("nvmlDeviceGetHandleByIndex", "handle-0"),
        nvmlDeviceGetName=api("nvmlDeviceGetName", "NVIDIA H100 80GB HBM3"),
        nvmlDeviceGetUtilizationRates=api("nvmlDeviceGetUtilizationRates", SimpleNamespace(gpu=87, memory=40)),
        nvmlDeviceGetMemoryInfo=api(
            "nvmlDeviceGetMemoryInfo", SimpleNamespace(total=80 * 2**30, free=60 * 2**30, used=20 * 2**30)
        ),
        nvmlDeviceGetPowerUsage=api("nvmlDeviceGetPowerUsage", lambda: state.power_mw),
        nvmlDeviceGetTotalEnergyConsumption=api("nvmlDeviceGetTotalEnergyConsumption", lambda: state.energy_mj),
        nvmlDeviceGetClockInfo=api("nvmlDeviceGetClockInfo", 1980),
        nvmlDeviceGetTemperature=api("nvmlDeviceGetTemperature", 61),
        state=state,
    )
    return module


# -- scripted samplers for the monitor ------------------------------------------------------------
class ScriptedSampler(Sampler):
    """A sampler whose readings come from ``read()`` (a callable), counting its calls; no third-party API."""

    def __init__(self, name, read, power_domain=None, reason=None):
        super().__init__()
        self.name, self.power_domain = name, power_domain
        self.read, self.reason = read, reason
        self.calls = 0
        self.closed = 0

    def available(self):
        return self.reason

    def sample(self):
        self.calls += 1
        return self.read(self.calls)

    def close(self):
        self.closed += 1

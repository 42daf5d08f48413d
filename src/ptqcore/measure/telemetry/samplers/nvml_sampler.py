"""A desktop or server NVIDIA GPU through NVML (package nvidia-ml-py, module ``pynvml``).

Readings of GPU ``index``: ``gpu_load_percent`` (``nvmlDeviceGetUtilizationRates().gpu``: the
share of the last sample period, 1/6 s to 1 s, in which a kernel ran), ``gpu_memory_used_bytes``,
``power_w`` (``nvmlDeviceGetPowerUsage``, mW), ``energy_j`` (``nvmlDeviceGetTotalEnergyConsumption``,
a mJ counter since the driver loaded, Volta and newer; it moves every 20-100 ms, so energy over
windows shorter than a few seconds is coarse), ``gpu_mhz`` (SM clock) and ``temp_c_gpu``.

A reading the GPU does not support (``NVMLError_NotSupported`` when probed in ``available()``)
is left out for the whole run and named in ``missing``. NVML does not exist on Jetson up to
JetPack 6: there this sampler is unavailable and a Jetson sampler reads the board.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from ptqcore.measure.telemetry.samplers.base import Readings, Sampler


class NvmlSampler(Sampler):
    """NVML readings of one GPU; ``nvml`` replaces ``import pynvml`` (tests pass a fake module)."""

    name = "nvml"

    def __init__(self, index: int = 0, nvml=None) -> None:
        super().__init__()
        self.index = index
        self.power_domain = f"gpu:{index}"
        self._nvml = nvml
        self._handle = None
        self._initialized = False
        self._probes: Dict[str, Callable[[], float]] = {}

    def available(self) -> Optional[str]:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return "nvidia-ml-py is not installed (pip install ptqcore[nvidia])"
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            self._initialized = True
            count = nvml.nvmlDeviceGetCount()
            if self.index >= count:
                self.close()
                return f"NVML sees {count} GPU(s), none with index {self.index}"
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            name = nvml.nvmlDeviceGetName(self._handle)
        except nvml.NVMLError as err:
            self.close()
            return f"NVML: {err}"
        self.notes["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        self._probes = self._supported(self._all_probes())
        return None

    def _all_probes(self) -> Dict[str, Callable[[], float]]:
        nvml, handle = self._nvml, self._handle
        return {
            "gpu_load_percent": lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "gpu_memory_used_bytes": lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used),
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            "energy_j": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
            "gpu_mhz": lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "temp_c_gpu": lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        }

    def _supported(self, probes: Dict[str, Callable[[], float]]) -> Dict[str, Callable[[], float]]:
        kept = {}
        for key, probe in probes.items():
            try:
                probe()
            except self._nvml.NVMLError as err:
                self.missing[key] = f"NVML: {err}"
                continue
            kept[key] = probe
        return kept

    def sample(self) -> Readings:
        return {key: probe() for key, probe in self._probes.items()}

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            self._handle = None
            self._nvml.nvmlShutdown()

"""Resource and energy telemetry: samplers per source, a sampling monitor, energy arithmetic, machine state.

Importing this package is cheap: psutil, pynvml (nvidia-ml-py) and jtop (jetson-stats) are
imported only by the sampler that reads them, when it is asked whether it is available.

Typical use::

    from ptqcore.measure.telemetry import ResourceMonitor, default_samplers, energy_per_inference

    with ResourceMonitor(default_samplers(), interval_s=0.2) as monitor:
        idle = monitor.idle_baseline(2.0)
        with monitor.phase("inference") as window:
            n = run_inferences()
    inference = window.summary()
    if inference.energy_j is not None:
        per_inference = energy_per_inference(inference.energy_j, idle.power_w_mean, inference.duration_s, n)
"""

from ptqcore.measure.telemetry.energy import (
    EnergyPerInference,
    counter_delta,
    counter_increment,
    energy_per_inference,
    interpolate,
    short_window_flag,
    time_average,
    trapezoid_energy,
    trapezoid_integral,
)
from ptqcore.measure.telemetry.machine_state import jetson_clocks_state, machine_state, max_drawdown, stability_flags
from ptqcore.measure.telemetry.monitor import Phase, ResourceMonitor
from ptqcore.measure.telemetry.samplers import (
    FirstAvailable,
    JetsonSysfsSampler,
    JtopSampler,
    NvmlSampler,
    PsutilSampler,
    RaplSampler,
    Sampler,
    TegrastatsSampler,
    default_samplers,
    parse_tegrastats,
)
from ptqcore.measure.telemetry.summary import PhaseSummary, Sample

__all__ = [
    "EnergyPerInference",
    "FirstAvailable",
    "JetsonSysfsSampler",
    "JtopSampler",
    "NvmlSampler",
    "Phase",
    "PhaseSummary",
    "PsutilSampler",
    "RaplSampler",
    "ResourceMonitor",
    "Sample",
    "Sampler",
    "TegrastatsSampler",
    "counter_delta",
    "counter_increment",
    "default_samplers",
    "energy_per_inference",
    "interpolate",
    "jetson_clocks_state",
    "machine_state",
    "max_drawdown",
    "parse_tegrastats",
    "short_window_flag",
    "stability_flags",
    "time_average",
    "trapezoid_energy",
    "trapezoid_integral",
]

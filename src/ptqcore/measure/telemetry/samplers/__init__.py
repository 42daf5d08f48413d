"""Samplers, one per source, and :func:`default_samplers`, the set a machine gets by default.

Importing this package imports no optional library: psutil, pynvml and jtop are imported by
their sampler's ``available()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from ptqcore.measure.telemetry.samplers.base import FirstAvailable, Readings, Sampler
from ptqcore.measure.telemetry.samplers.jetson_sysfs import JetsonSysfsSampler
from ptqcore.measure.telemetry.samplers.jtop_sampler import JtopSampler
from ptqcore.measure.telemetry.samplers.nvml_sampler import NvmlSampler
from ptqcore.measure.telemetry.samplers.psutil_sampler import PsutilSampler
from ptqcore.measure.telemetry.samplers.rapl import RaplSampler
from ptqcore.measure.telemetry.samplers.tegrastats import TegrastatsSampler, parse_tegrastats

__all__ = [
    "FirstAvailable",
    "JetsonSysfsSampler",
    "JtopSampler",
    "NvmlSampler",
    "PsutilSampler",
    "RaplSampler",
    "Readings",
    "Sampler",
    "TegrastatsSampler",
    "default_samplers",
    "parse_tegrastats",
]


def default_samplers(interval_s: float = 0.2, root: Path = Path("/")) -> List[Sampler]:
    """psutil, NVML GPU 0, one Jetson source (jtop, else sysfs, else tegrastats) and RAPL.

    Nothing is opened yet: the monitor calls ``available()`` on each and reports the reasons of
    those that are not. The Jetson sources are alternatives for the same board, so only the
    first available one runs (:class:`FirstAvailable`).
    """
    jetson = FirstAvailable(
        [JtopSampler(interval_s, root), JetsonSysfsSampler(root), TegrastatsSampler(max(interval_s, 0.1), root=root)],
        name="jetson",
    )
    return [PsutilSampler(), NvmlSampler(0), jetson, RaplSampler(root)]

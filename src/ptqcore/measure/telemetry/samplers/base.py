"""The sampler interface: one source of readings (psutil, NVML, jtop, sysfs, tegrastats, RAPL).

Contract, for every sampler:

* ``available()`` returns None when the source can be read here, else the reason it cannot
  (``"nvidia-ml-py is not installed"``). It may open the source (connect, start a subprocess);
  it never raises for a missing or forbidden source. Call it once, before ``sample()``.
* ``sample()`` returns the readings of one instant as ``{key: number}``, units in the key
  (``cpu_percent_process``, ``cpu_percent_system``, ``rss_bytes``, ``memory_used_bytes``,
  ``gpu_load_percent``, ``gpu_memory_used_bytes``, ``power_w``, ``power_w_<RAIL>``,
  ``energy_j`` for a monotone counter, ``cpu_mhz``, ``gpu_mhz``, ``emc_mhz``, ``temp_c_<zone>``).
  A reading the source does not have is left out, never 0; a reading that the source lacks
  for good is named in ``missing`` with the reason. It may raise: the monitor then drops the
  sampler and records the error.
* ``close()`` releases what ``available()`` opened; calling it twice is harmless.
* ``power_domain`` names what ``power_w`` / ``energy_j`` measure (``"jetson-board"``,
  ``"gpu:0"``, ``"cpu-packages"``), None for a sampler without power. The monitor adds energy
  across distinct domains only, so two sources of one domain are never counted twice.
* ``notes`` holds facts about the readings worth recording (which rail ``power_w`` is).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

Readings = Dict[str, float]


class Sampler:
    """Base class; subclasses set ``name`` and override ``available``, ``sample`` and maybe ``close``."""

    name = "sampler"
    power_domain: Optional[str] = None

    def __init__(self) -> None:
        self.notes: Dict[str, str] = {}
        self.missing: Dict[str, str] = {}

    def available(self) -> Optional[str]:
        return None

    def sample(self) -> Readings:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class FirstAvailable(Sampler):
    """The first of several samplers for the same thing that is available here (e.g. jtop, else sysfs).

    ``available()`` asks each candidate in order and keeps the first usable one; its reason,
    when none is, lists every candidate's reason. Afterwards this object reads through the
    chosen sampler and takes its ``name``, ``power_domain``, ``notes`` and ``missing``.
    """

    def __init__(self, candidates: Sequence[Sampler], name: str = "first-available") -> None:
        super().__init__()
        if not candidates:
            raise ValueError("FirstAvailable needs at least one candidate")
        self.candidates = list(candidates)
        self.name = name
        self.chosen: Optional[Sampler] = None

    def available(self) -> Optional[str]:
        reasons: List[str] = []
        for candidate in self.candidates:
            reason = availability(candidate)
            if reason is None:
                self.chosen = candidate
                self.name, self.power_domain = candidate.name, candidate.power_domain
                self.notes, self.missing = candidate.notes, candidate.missing
                return None
            reasons.append(f"{candidate.name}: {reason}")
        return "; ".join(reasons)

    def sample(self) -> Readings:
        if self.chosen is None:
            raise RuntimeError("FirstAvailable.sample() before a successful available()")
        return self.chosen.sample()

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()


def availability(sampler: Sampler) -> Optional[str]:
    """``sampler.available()``, with an exception it raises turned into the reason (and the sampler closed)."""
    try:
        return sampler.available()
    except Exception as err:  # a broken source is unavailable, with the error as the reason
        close_quietly(sampler)
        return f"availability check failed: {type(err).__name__}: {err}"


def close_quietly(sampler: Sampler) -> Optional[str]:
    """Close ``sampler``; return the error text if closing raised, else None."""
    try:
        sampler.close()
    except Exception as err:  # closing must never stop the others from closing
        return f"{type(err).__name__}: {err}"
    return None

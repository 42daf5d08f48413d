"""Which Jetson power rail is the board's total, shared by the sysfs and tegrastats samplers.

A rail that measures the board's input is the total: ``VIN`` (Thor's INA238), ``VDD_IN``
(Orin Nano / NX, Xavier NX) or ``POM_5V_IN`` (Nano, TX1). Boards without one (AGX Orin, AGX
Xavier) get the sum of their named module rails, as jetson-stats does; that sum leaves out the
carrier board, and the note returned says so. ``NC`` channels are not connected and skipped.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

from ptqcore.measure.telemetry.sysfs import key_part

INPUT_RAILS = ("VIN", "VDD_IN", "POM_5V_IN")


def total_note(rail_names: Iterable[str]) -> Optional[str]:
    """What the total of these rails measures, or None without rails."""
    names = sorted(set(rail_names) - {"NC"})
    inputs = [name for name in INPUT_RAILS if name in names]
    if inputs:
        return f"input rail {inputs[0]} (whole board)"
    if not names:
        return None
    return f"sum of module rails {'+'.join(names)} (no input rail: the carrier board is not measured)"


def total_power(rails_w: Dict[str, float]) -> Tuple[Optional[float], Optional[str]]:
    """(total watts, what it measures: :func:`total_note`) from ``{rail: watts}``; (None, None) with no rails."""
    rails = {name: watts for name, watts in rails_w.items() if name != "NC"}
    inputs = [name for name in INPUT_RAILS if name in rails]
    total = rails[inputs[0]] if inputs else (sum(rails.values()) if rails else None)
    return total, total_note(rails)


def rail_readings(rails_w: Dict[str, float]) -> Tuple[Dict[str, float], Optional[str]]:
    """``power_w`` (the total) and ``power_w_<RAIL>`` for each rail, plus the note on the total."""
    readings = {f"power_w_{key_part(name)}": watts for name, watts in rails_w.items() if name != "NC"}
    total, note = total_power(rails_w)
    if total is not None:
        readings["power_w"] = total
    return readings, note

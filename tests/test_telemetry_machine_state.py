"""Machine state around a window (power mode, jetson_clocks, clocks, temperatures) and stability flags."""

import pytest
from fakes import telemetry_fakes as fakes

from ptqcore.measure.telemetry import Sample, machine_state, max_drawdown, stability_flags


def test_orin_nano_state_with_jetson_clocks_on(tmp_path):
    state = machine_state(fakes.orin_nano_tree(tmp_path, 6, pinned=True))
    assert state["power_mode"] == "15W" and state["power_mode_id"] == "0"
    assert state["jetson_clocks"] is True
    assert state["cpu_mhz"] == {f"cpu{n}": 1510 for n in range(6)}
    assert state["gpu_mhz"] == 624 and state["emc_mhz"] == pytest.approx(2133.0)
    assert state["temperatures_c"] == {"cpu": 47.5, "gpu": 46.0, "tj": 48.0}  # cv0 is off


def test_clocks_free_to_scale_mean_jetson_clocks_is_off(tmp_path):
    state = machine_state(fakes.orin_nano_tree(tmp_path, 5, pinned=False))
    assert state["jetson_clocks"] is False
    assert "cpu0" in state["jetson_clocks_detail"] and "gpu 17000000.ga10b" in state["jetson_clocks_detail"]


def test_a_core_below_its_maximum_is_enough_to_say_off(tmp_path):
    fakes.orin_nano_tree(tmp_path, 6, pinned=True)
    fakes.write(tmp_path, "sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq", 729600)
    state = machine_state(tmp_path)
    assert state["jetson_clocks"] is False and state["jetson_clocks_detail"].endswith("cpu3")


def test_offline_cores_do_not_count(tmp_path):
    fakes.orin_nano_tree(tmp_path, 6, pinned=True)
    fakes.cpufreq(tmp_path, 8, 1510400, 1510400, 1510400, offline=(6, 7))
    assert machine_state(tmp_path)["jetson_clocks"] is True


def test_off_jetson_everything_jetson_is_unknown(tmp_path):
    fakes.cpufreq(tmp_path, 2, 2400000, 800000, 3500000)
    fakes.thermal(tmp_path, [("x86_pkg_temp", 52000), ("acpitz", 27800)])
    state = machine_state(tmp_path)
    assert state["jetson_clocks"] == "unknown" and state["power_mode"] == "unknown"
    assert state["gpu_mhz"] == "unknown" and state["emc_mhz"] == "unknown"
    assert state["cpu_mhz"] == {"cpu0": 2400, "cpu1": 2400}
    assert state["temperatures_c"] == {"x86_pkg_temp": 52.0, "acpitz": 27.8}


def test_an_empty_tree_is_all_unknown(tmp_path):
    state = machine_state(tmp_path)
    assert state["cpu_mhz"] == "unknown" and state["temperatures_c"] == {}


def clocks(*values, key="gpu_mhz"):
    return [Sample(float(t), {"jetson": {key: v}}) for t, v in enumerate(values)]


@pytest.mark.parametrize(
    "values, drop",
    [
        ([1300, 1300, 1300], 0.0),
        ([306, 624, 1300], 0.0),  # ramping up is not a drop
        ([1300, 1300, 1040, 1300], 0.2),
        ([624, 1300, 1100, 650, 900], 0.5),
    ],
)
def test_max_drawdown_is_the_largest_fall_below_the_running_peak(values, drop):
    assert max_drawdown(values) == pytest.approx(drop)


def test_a_clock_falling_more_than_ten_percent_is_throttling():
    flags = stability_flags(clocks(1300, 1300, 1040, 1040))
    assert flags["throttling"] is True and flags["clock_drop"] == {"jetson.gpu_mhz": pytest.approx(0.2)}
    assert stability_flags(clocks(1300, 1250, 1300))["throttling"] is False


def test_without_clocks_or_latencies_the_flags_are_unknown_not_false():
    flags = stability_flags([Sample(0.0, {"psutil": {"rss_bytes": 1.0}})])
    assert flags["throttling"] is None and flags["unstable"] is None and flags["latency_cv"] is None


def test_latency_cv_above_the_threshold_is_unstable():
    steady = stability_flags([], latencies_s=[0.010, 0.0101, 0.0099, 0.010])
    noisy = stability_flags([], latencies_s=[0.010, 0.020, 0.010, 0.030])
    assert steady["unstable"] is False and steady["latency_cv"] < 0.1
    assert noisy["unstable"] is True and noisy["latency_cv"] > 0.1
    assert stability_flags([], latencies_s=[0.010, 0.012], max_cv=0.5)["unstable"] is False

"""ResourceMonitor: its thread always stops, failing sources are dropped alone, and windows are summarized right.

Real-time tests stay under a second each and assert on timing only with generous bounds.
"""

import json
import threading
import time

import pytest
from fakes import telemetry_fakes as fakes

from ptqcore.measure.telemetry import PsutilSampler, ResourceMonitor, default_samplers, energy_per_inference
from ptqcore.measure.telemetry.summary import Sample, SourceInfo, summarize

FAST = 0.02


def monitor_threads():
    return [t for t in threading.enumerate() if t.name == "ptqcore-resource-monitor" and t.is_alive()]


def constant(**readings):
    return lambda calls: dict(readings)


def busy(seconds):
    end, x = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        x += 1
    return x


# -- the thread -----------------------------------------------------------------------------------
def test_the_thread_stops_and_the_phase_closes_when_the_measured_code_raises():
    sampler = fakes.ScriptedSampler("fake", constant(power_w=5.0), power_domain="board")
    monitor = ResourceMonitor([sampler], interval_s=FAST)
    with pytest.raises(ZeroDivisionError), monitor, monitor.phase("build"):
        time.sleep(3 * FAST)
        raise ZeroDivisionError("the measured code failed")
    assert not monitor.running and monitor_threads() == []
    assert sampler.closed == 1
    summary = monitor.summary("build")
    assert summary.energy_j == pytest.approx(5.0 * summary.duration_s)
    calls = sampler.calls
    time.sleep(3 * FAST)
    assert sampler.calls == calls  # nobody samples any more


def test_a_sampler_that_fails_mid_run_is_dropped_and_the_others_go_on():
    def flaky(calls):
        if calls > 2:
            raise OSError("device went away")
        return {"gpu_load_percent": 50.0}

    broken = fakes.ScriptedSampler("flaky", flaky)
    healthy = fakes.ScriptedSampler("healthy", constant(rss_bytes=1000.0))
    with ResourceMonitor([broken, healthy], interval_s=FAST) as monitor:
        time.sleep(15 * FAST)
    assert broken.calls == 3 and broken.closed == 1
    assert healthy.calls > broken.calls  # read on after the other was dropped
    assert monitor.unavailable["flaky"] == "failed during sampling: OSError: device went away"
    total = monitor.summary()
    assert total.rss_bytes_peak == 1000.0 and total.gpu_load_percent_peak == 50.0
    assert monitor_threads() == []


def test_a_sampler_stuck_inside_sample_does_not_stop_stop_and_the_thread_ends_once_it_returns():
    release = threading.Event()

    def stuck(calls):
        if calls == 2:  # the first background sample blocks
            release.wait(5.0)
        return {"rss_bytes": 1.0}

    sampler = fakes.ScriptedSampler("stuck", stuck)
    monitor = ResourceMonitor([sampler], interval_s=FAST, stop_timeout_s=0.1)
    with monitor:
        time.sleep(3 * FAST)
    assert not monitor.running and "did not stop" in monitor.unavailable["monitor"]
    assert sampler.closed == 1
    release.set()
    monitor._thread.join(1.0)
    assert monitor_threads() == []
    total = monitor.summary()  # the stuck thread's late sample is not part of the run
    assert total.sample_count == len(monitor.samples()) == 1  # the opening sample only


def test_a_sampler_whose_availability_check_raises_is_unavailable_and_never_read():
    class Exploding(fakes.ScriptedSampler):
        def available(self):
            raise RuntimeError("boom")

    exploding = Exploding("exploding", constant())
    with ResourceMonitor([exploding, fakes.ScriptedSampler("ok", constant(rss_bytes=1.0))], interval_s=FAST) as monitor:
        pass
    assert "RuntimeError: boom" in monitor.unavailable["exploding"] and exploding.calls == 0


def test_unavailable_sources_are_listed_with_their_reason_and_metrics_are_none_not_zero():
    absent = fakes.ScriptedSampler("nvml", constant(), reason="NVML: Driver Not Loaded")
    with ResourceMonitor([absent, fakes.ScriptedSampler("host", constant(rss_bytes=1.0))], interval_s=FAST) as monitor:
        pass
    total = monitor.summary()
    assert total.unavailable["nvml"] == "NVML: Driver Not Loaded"
    assert total.gpu_load_percent_mean is None and total.energy_j is None and total.power_w_mean is None
    assert total.unavailable["gpu_load_percent"] == "no source reported it"
    assert "energy_j" in total.unavailable


def test_phases_need_a_running_monitor_and_the_total_needs_a_stopped_one():
    monitor = ResourceMonitor([fakes.ScriptedSampler("x", constant(rss_bytes=1.0))], interval_s=FAST)
    with pytest.raises(RuntimeError):
        with monitor.phase("early"):
            pass
    with monitor:
        with pytest.raises(RuntimeError):
            monitor.summary()
        with monitor.phase("a"):
            pass
    with pytest.raises(KeyError):
        monitor.summary("missing")
    assert set(monitor.summaries()) == {"a", "total"}
    with pytest.raises(RuntimeError):
        monitor.start()


def test_real_psutil_around_a_busy_loop_gives_sane_numbers():
    with ResourceMonitor([PsutilSampler()], interval_s=0.05, keep_samples=True) as monitor:
        with monitor.phase("busy") as window:
            busy(0.4)
    summary = window.summary()
    assert 0.35 < summary.duration_s < 2.0
    assert summary.sample_count >= 3
    assert summary.cpu_percent_process_mean > 0 and summary.cpu_percent_process_peak > 0
    assert summary.cpu_percent_system_peak > 0
    assert summary.rss_bytes_peak > 0 and summary.memory_used_bytes_peak > 0
    assert summary.sources["rss_bytes"] == "psutil"
    assert len(summary.samples) == summary.sample_count and summary.samples[0]["t_s"] >= 0
    json.dumps(summary.as_dict())  # JSON-ready


def test_a_window_too_short_for_a_cpu_reading_says_so_instead_of_failing():
    with ResourceMonitor([PsutilSampler()], interval_s=1.0) as monitor:
        with monitor.phase("instant") as window:
            pass  # the closing sample comes < 10 ms after the opening one: no CPU % in the window
    summary = window.summary()
    assert summary.rss_bytes_peak > 0
    assert summary.cpu_percent_process_mean is None
    assert "cpu_percent_process" in summary.unavailable


def test_idle_baseline_and_energy_per_inference_around_a_window():
    board = {"watts": 4.0}
    sampler = fakes.ScriptedSampler("board", lambda calls: {"power_w": board["watts"]}, power_domain="jetson-board")
    with ResourceMonitor([sampler], interval_s=FAST) as monitor:
        idle = monitor.idle_baseline(0.1)
        board["watts"] = 10.0
        with monitor.phase("inference") as window:
            time.sleep(0.15)
    inference = window.summary()
    assert idle.power_w_mean == pytest.approx(4.0)
    assert inference.power_w_mean == pytest.approx(10.0)
    assert inference.energy_domains["jetson-board"]["method"] == "trapezoid"
    per = energy_per_inference(inference.energy_j, idle.power_w_mean, inference.duration_s, inferences=30)
    assert per.net_j == pytest.approx(6.0 * inference.duration_s / 30)
    assert per.idle_power_w == pytest.approx(4.0)


def test_throttling_shows_in_the_summary_of_the_window():
    sampler = fakes.ScriptedSampler("jetson", lambda calls: {"gpu_mhz": 1300.0 if calls == 1 else 900.0})
    with ResourceMonitor([sampler], interval_s=FAST) as monitor:
        time.sleep(6 * FAST)
    total = monitor.summary()
    assert total.stability["throttling"] is True
    assert total.clocks_mhz["gpu_mhz"]["max"] == 1300 and total.clocks_mhz["gpu_mhz"]["min"] == 900
    assert any("clock drop" in flag for flag in total.flags)


# -- the summary arithmetic (pure, on synthetic samples) --------------------------------------------
def samples(*rows):
    return [Sample(t, readings) for t, readings in rows]


def summary_of(rows, start, end, sources, **kwargs):
    infos = [SourceInfo(*source) if isinstance(source, tuple) else SourceInfo(source) for source in sources]
    return summarize("w", start, end, samples(*rows), infos, interval_s=0.1, unavailable={}, origin=0.0, **kwargs)


def test_a_counter_is_preferred_to_integrating_power():
    rows = [(t, {"nvml": {"energy_j": 100.0 + 7.0 * t, "power_w": 300.0}}) for t in (0.0, 1.0, 2.0, 3.0)]
    result = summary_of(rows, 0.5, 2.5, [("nvml", "gpu:0")])
    assert result.energy_domains["gpu:0"]["method"] == "counter"
    assert result.energy_j == pytest.approx(14.0)  # 7 J/s over 2 s, interpolated at both edges
    assert result.power_w_mean == pytest.approx(7.0)


def test_energy_adds_across_domains_and_counts_each_domain_once():
    rows = [
        (t, {"jtop": {"power_w": 10.0}, "sysfs": {"power_w": 10.0}, "rapl": {"energy_j": 20.0 * t}})
        for t in (0.0, 1.0, 2.0)
    ]
    result = summary_of(rows, 0.0, 2.0, [("jtop", "jetson-board"), ("sysfs", "jetson-board"), ("rapl", "cpu-packages")])
    assert set(result.energy_domains) == {"jetson-board", "cpu-packages"}
    assert result.energy_domains["jetson-board"]["source"] == "jtop"
    assert result.energy_j == pytest.approx(20.0 + 40.0)
    assert result.power_w_mean == pytest.approx(30.0)


def test_power_readings_that_do_not_cover_the_window_give_no_energy_rather_than_a_wrong_one():
    rows = [
        (0.0, {"host": {"rss_bytes": 1.0}}),
        (1.0, {"host": {"rss_bytes": 1.0}, "board": {"power_w": 5.0}}),
        (2.0, {"host": {"rss_bytes": 1.0}, "board": {"power_w": 5.0}}),
    ]
    result = summary_of(rows, 0.0, 2.0, ["host", ("board", "jetson-board")])
    assert result.energy_j is None
    assert result.unavailable["board.energy_j"] == "its readings do not cover the window"


def test_cpu_percent_is_weighted_by_the_time_each_reading_covers_and_the_opening_reading_is_not_used():
    rows = [
        (0.0, {"psutil": {"cpu_percent_process": 999.0}}),  # describes the time before the window
        (1.0, {"psutil": {"cpu_percent_process": 100.0}}),
        (1.5, {"psutil": {"cpu_percent_process": 40.0}}),
    ]
    result = summary_of(rows, 0.0, 1.5, ["psutil"])
    assert result.cpu_percent_process_mean == pytest.approx((100.0 * 1.0 + 40.0 * 0.5) / 1.5)
    assert result.cpu_percent_process_peak == 100.0


def test_gauges_are_time_averaged_and_the_first_source_wins():
    rows = [
        (0.0, {"tegrastats": {"gpu_load_percent": 0.0}, "jtop": {"gpu_load_percent": 50.0}}),
        (1.0, {"tegrastats": {"gpu_load_percent": 100.0}, "jtop": {"gpu_load_percent": 50.0}}),
        (3.0, {"tegrastats": {"gpu_load_percent": 100.0}, "jtop": {"gpu_load_percent": 50.0}}),
    ]
    result = summary_of(rows, 0.0, 3.0, ["tegrastats", "jtop"])
    assert result.gpu_load_percent_mean == pytest.approx((50.0 * 1 + 100.0 * 2) / 3)  # trapezoids: 0->100, then 100
    assert result.gpu_load_percent_peak == 100.0 and result.sources["gpu_load_percent"] == "tegrastats"


def test_rails_clocks_and_temperatures_are_summarized_per_key():
    rows = [
        (t, {"jetson": {"power_w_VDD_SOC": 1.0 + t, "cpu_mhz": 1500.0 - 100 * t, "temp_c_gpu": 40.0 + t}})
        for t in (0.0, 1.0, 2.0)
    ]
    result = summary_of(rows, 0.0, 2.0, ["jetson"])
    assert result.rails_w_mean == {"VDD_SOC": pytest.approx(2.0)}
    assert result.clocks_mhz["cpu_mhz"] == {
        "min": 1300.0,
        "max": 1500.0,
        "mean": pytest.approx(1400.0),
        "source": "jetson",
    }
    assert result.temperature_c_peak == {"gpu": 42.0}


def test_a_short_window_is_flagged_and_samples_are_kept_only_when_asked():
    rows = [(t, {"board": {"power_w": 2.0}}) for t in (0.0, 0.1, 0.2)]
    flagged = summary_of(rows, 0.0, 0.2, [("board", "b")], keep_samples=True)
    assert any("shorter than 10 sampling intervals" in flag for flag in flagged.flags)
    assert [s["t_s"] for s in flagged.samples] == [0.0, 0.1, 0.2]
    assert summary_of(rows, 0.0, 0.2, [("board", "b")]).samples is None


def test_default_samplers_on_a_fake_orin_nano_pick_sysfs_and_measure_the_board(tmp_path):
    fakes.orin_nano_tree(tmp_path, jetpack=6)
    with ResourceMonitor(default_samplers(interval_s=0.05, root=tmp_path), interval_s=0.05) as monitor:
        with monitor.phase("inference") as window:
            time.sleep(0.1)
    summary = window.summary()
    board = summary.energy_domains["jetson-board"]
    assert board["source"] == "jetson-sysfs" and board["method"] == "trapezoid"
    assert board["power_w_mean"] == pytest.approx(5.072 * 1.264)
    assert board["note"].startswith("input rail VDD_IN")
    assert summary.gpu_load_percent_mean == pytest.approx(34.5)
    assert summary.temperature_c_peak["cpu"] == 47.5 and summary.clocks_mhz["gpu_mhz"]["max"] == 624
    assert summary.rss_bytes_peak > 0  # psutil, always
    assert "no RAPL zones" in summary.unavailable["rapl"]
    assert summary.stability["throttling"] is False

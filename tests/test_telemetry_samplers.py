"""Each sampler against a fake of its source: sysfs trees, recorded tegrastats lines, a fake jtop, a fake NVML."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from fakes import telemetry_fakes as fakes

from ptqcore.measure.telemetry import (
    FirstAvailable,
    JetsonSysfsSampler,
    JtopSampler,
    NvmlSampler,
    PsutilSampler,
    RaplSampler,
    TegrastatsSampler,
    parse_tegrastats,
)

MIB = 1024 * 1024


def test_importing_telemetry_loads_no_optional_library():
    code = (
        "import sys, ptqcore.measure.telemetry; "
        "print(sorted(m for m in ('psutil', 'pynvml', 'jtop', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- tegrastats ---------------------------------------------------------------------------------
def test_jetpack5_agx_orin_line_has_no_input_rail_so_the_module_rails_are_summed():
    idle, _, _, busy = fakes.tegrastats_lines("jp5_agx_orin_r35")
    readings = parse_tegrastats(busy)
    assert readings["gpu_load_percent"] == 99.0 and readings["gpu_mhz"] == 1300.0
    assert readings["emc_load_percent"] == 29.0 and readings["emc_mhz"] == 3199.0
    assert readings["cpu_mhz"] == 2201.0
    assert readings["memory_used_bytes"] == 5106 * MIB
    rails = {"VDD_GPU_SOC": 15.247, "VDD_CPU_CV": 3.208, "VIN_SYS_5V0": 5.155, "VDDQ_VDD2_1V8AO": 1.553}
    for rail, watts in rails.items():
        assert readings[f"power_w_{rail}"] == pytest.approx(watts)  # the current value, not tegrastats' average
    assert readings["power_w"] == pytest.approx(sum(rails.values()))
    assert "power_w_NC" not in readings
    # sensors that are off (CV0@-256C, GPU@-256C while the GPU is gated) are left out, never -256
    assert "temp_c_cv0" not in readings and "temp_c_gpu" not in parse_tegrastats(idle)
    assert readings["temp_c_gpu"] == 46.468 and readings["temp_c_tj"] == 47.125
    assert parse_tegrastats(idle)["gpu_mhz"] == 0.0  # the GPCs' reported clock while idle


@pytest.mark.parametrize(
    "name, line, expected",
    [
        (
            "jp5_orin_nano_r35",
            0,
            {
                "power_w": 4.962,
                "power_w_VDD_SOC": 1.434,
                "gpu_load_percent": 0.0,
                "gpu_mhz": 305.0,
                "temp_c_cpu": 47.5,
                "cpu_mhz": 729.0,
                "emc_mhz": 2133.0,
            },
        ),
        (
            "jp5_orin_nano_r35",
            2,
            {
                "power_w": 9.412,
                "power_w_VDD_CPU_GPU_CV": 4.076,
                "gpu_load_percent": 96.0,
                "gpu_mhz": 624.0,
                "cpu_percent_system": (31 + 18 + 12 + 9 + 27 + 6) / 6,
                "cpu_mhz": 1510.0,
            },
        ),
        (
            "jp6_orin_nano_r36",
            0,
            {
                "power_w": 4.673,
                "gpu_mhz": 305.0,
                "temp_c_soc2": 55.562,
                "cpu_mhz": 1036.0,
                "memory_used_bytes": 2272 * MIB,
                "swap_used_bytes": 221 * MIB,
            },
        ),
        (
            "jp6_orin_nano_r36",
            2,
            {"power_w": 11.873, "gpu_load_percent": 98.0, "gpu_mhz": 1020.0, "emc_mhz": 3199.0, "temp_c_gpu": 58.5},
        ),
        (
            "jp4_nano_r32",
            1,
            {
                "power_w": 5.104,
                "power_w_POM_5V_GPU": 2.376,
                "gpu_load_percent": 99.0,
                "gpu_mhz": 921.0,
                "emc_mhz": 1600.0,
                "cpu_mhz": 1479.0,
                "temp_c_gpu": 29.0,
            },
        ),
    ],
)
def test_recorded_lines_of_jetpack_4_5_and_6(name, line, expected):
    readings = parse_tegrastats(fakes.tegrastats_lines(name)[line])
    for key, value in expected.items():
        assert readings[key] == pytest.approx(value), key


def test_a_line_printed_without_root_lacks_the_clocks_and_they_are_left_out():
    readings = parse_tegrastats(fakes.tegrastats_lines("jp6_orin_nano_r36_user")[1])
    assert readings["gpu_load_percent"] == 71.0 and readings["power_w"] == pytest.approx(8.921)
    assert "gpu_mhz" not in readings and "emc_mhz" not in readings and "emc_load_percent" not in readings


def test_the_nano_pmic_placeholder_is_not_a_temperature():
    readings = parse_tegrastats(fakes.tegrastats_lines("jp4_nano_r32")[0])
    assert "temp_c_pmic" not in readings and readings["temp_c_thermal"] == 24.75


def test_a_line_without_fields_gives_no_readings():
    assert parse_tegrastats("tegrastats: unknown option") == {}


def test_sampler_on_recorded_lines_returns_the_latest_line():
    lines = fakes.tegrastats_lines("jp6_orin_nano_r36")
    sampler = TegrastatsSampler(lines=iter(lines), first_line_timeout_s=1.0)
    assert sampler.available() is None
    sampler._reader.join(1.0)  # the recorded stream ends: the latest line stays
    assert sampler.sample()["power_w"] == pytest.approx(11.873)
    assert "VDD_IN" in sampler.notes["power_w"]
    sampler.close()


def test_sampler_runs_tegrastats_with_the_interval_in_ms_and_stops_it(tmp_path):
    line = fakes.tegrastats_lines("jp5_orin_nano_r35")[0]
    args_file = tmp_path / "args"
    script = fakes.write(
        tmp_path,
        "usr/bin/tegrastats",
        textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        open({str(args_file)!r}, "w").write(" ".join(sys.argv[1:]))
        while True:
            print({line!r}, flush=True)
            time.sleep(0.05)
        """),
    )
    script.chmod(0o755)
    sampler = TegrastatsSampler(interval_s=0.25, root=tmp_path, first_line_timeout_s=5.0)
    assert sampler.available() is None
    process = sampler._process
    assert sampler.sample()["power_w"] == pytest.approx(4.962)
    sampler.close()
    assert process.poll() is not None  # terminated
    assert args_file.read_text() == "--interval 250"


def test_sampler_without_tegrastats_is_unavailable(tmp_path):
    assert "not found" in TegrastatsSampler(root=tmp_path).available()


def test_sampler_raises_once_tegrastats_has_exited(tmp_path):
    line = fakes.tegrastats_lines("jp5_orin_nano_r35")[0]
    script = fakes.write(tmp_path, "usr/bin/tegrastats", f"#!{sys.executable}\nprint({line!r}, flush=True)\n")
    script.chmod(0o755)
    sampler = TegrastatsSampler(root=tmp_path, first_line_timeout_s=5.0)
    assert sampler.available() is None
    sampler._process.wait(5.0)
    with pytest.raises(RuntimeError, match="exited"):
        sampler.sample()
    sampler.close()


# -- Jetson sysfs -------------------------------------------------------------------------------
@pytest.mark.parametrize("jetpack", [5, 6])
def test_orin_nano_sysfs_of_jetpack_5_and_6(tmp_path, jetpack):
    sampler = JetsonSysfsSampler(fakes.orin_nano_tree(tmp_path, jetpack))
    assert sampler.available() is None
    readings = sampler.sample()
    assert readings["gpu_load_percent"] == pytest.approx(34.5)  # 345 per mille
    assert readings["power_w"] == pytest.approx(5.072 * 1.264)  # VDD_IN: mV x mA
    assert readings["power_w_VDD_SOC"] == pytest.approx(5.064 * 0.280)
    assert not any("sum" in key.lower() for key in readings)  # channel 7 is not a rail
    assert readings["gpu_mhz"] == pytest.approx(624.0) and readings["cpu_mhz"] == pytest.approx(1510.0)
    assert readings["emc_mhz"] == pytest.approx(2133.0)
    assert readings["temp_c_cpu"] == 47.5 and readings["temp_c_tj"] == 48.0 and "temp_c_cv0" not in readings
    assert sampler.notes["power_w"].startswith("input rail VDD_IN")


def test_agx_orin_rails_are_summed_and_the_note_says_the_carrier_board_is_not_in_it(tmp_path):
    sampler = JetsonSysfsSampler(fakes.agx_orin_rails(tmp_path))
    assert sampler.available() is None
    readings = sampler.sample()
    assert readings["power_w"] == pytest.approx(5.0 * (0.48 + 0.08 + 0.8 + 0.06))
    assert "power_w_NC" not in readings
    assert "carrier board is not measured" in sampler.notes["power_w"]
    assert "gpu_load_percent" in sampler.missing


def test_jetpack4_iio_rails_report_milliwatts(tmp_path):
    sampler = JetsonSysfsSampler(fakes.nano_jp4_tree(tmp_path))
    assert sampler.available() is None
    readings = sampler.sample()
    assert readings["power_w"] == pytest.approx(2.389) and readings["power_w_POM_5V_CPU"] == pytest.approx(0.124)
    assert readings["gpu_load_percent"] == 0.0  # a real idle reading, present
    assert "emc_mhz" in sampler.missing and "emc_mhz" not in readings


def test_thor_ina238_vin_is_the_total_over_the_module_rails(tmp_path):
    fakes.ina3221_hwmon(
        tmp_path,
        "2-0040",
        "hwmon1",
        [("VDD_GPU", 19200, 300), ("VDD_CPU_SOC_MSS", 19200, 200), ("VIN_SYS_5V0", 5000, 600)],
    )
    sampler = JetsonSysfsSampler(fakes.thor_ina238(tmp_path, 28_500_000))
    assert sampler.available() is None
    readings = sampler.sample()
    assert readings["power_w"] == pytest.approx(28.5) and readings["power_w_VIN"] == pytest.approx(28.5)
    assert readings["power_w_VDD_GPU"] == pytest.approx(19.2 * 0.3)
    assert "VIN" in sampler.notes["power_w"]


def test_a_rail_that_becomes_unreadable_drops_the_total_not_turns_it_into_a_smaller_one(tmp_path):
    fakes.orin_nano_tree(tmp_path, 6)
    sampler = JetsonSysfsSampler(tmp_path)
    assert sampler.available() is None
    (tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_input").unlink()
    readings = sampler.sample()
    assert "power_w" not in readings and "power_w_VDD_IN" not in readings
    assert readings["power_w_VDD_SOC"] == pytest.approx(5.064 * 0.280)


def test_no_jetson_files_means_unavailable(tmp_path):
    assert "no Jetson GPU load file" in JetsonSysfsSampler(tmp_path).available()


# -- RAPL ---------------------------------------------------------------------------------------
RANGE = 262_143_328_850


def rapl(tmp_path, package_uj, dram_uj=5_000_000, psys_uj=9_000_000):
    return fakes.rapl_tree(
        tmp_path,
        {
            "0": ("package-0", package_uj, RANGE),
            "0:0": ("core", 1_000_000, RANGE),
            "0:1": ("dram", dram_uj, RANGE),
            "1": ("psys", psys_uj, RANGE),
        },
    )


def test_rapl_counts_package_energy_from_the_first_sample_and_unwraps_the_counter(tmp_path):
    root = rapl(tmp_path, RANGE - 2_000_000)
    sampler = RaplSampler(root)
    assert sampler.available() is None
    assert sampler.sample()["energy_j"] == 0.0
    fakes.write(root, "sys/class/powercap/intel-rapl:0/energy_uj", 3_000_000)  # wrapped: +5 J
    fakes.write(root, "sys/class/powercap/intel-rapl:0:1/energy_uj", 6_500_000)  # dram +1.5 J
    readings = sampler.sample()
    assert readings["energy_j"] == pytest.approx(5.0)
    assert readings["energy_j_package_0"] == pytest.approx(5.0)
    assert readings["energy_j_package_0_dram"] == pytest.approx(1.5)
    assert readings["energy_j_psys"] == 0.0  # reported, but never added to the packages
    assert sampler.notes["energy_j"] == "sum of RAPL zones package_0"
    assert sampler.power_domain == "cpu-packages"


def test_rapl_readable_by_root_only_is_unavailable_with_that_reason(tmp_path, monkeypatch):
    root = rapl(tmp_path, 1000)
    original = pathlib.Path.read_bytes

    def read_bytes(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return original(path)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    reason = RaplSampler(root).available()
    assert "Permission denied" in reason and "root-only" in reason


def test_no_rapl_zones_is_unavailable(tmp_path):
    assert "no RAPL zones" in RaplSampler(tmp_path).available()


# -- jtop ---------------------------------------------------------------------------------------
def jtop_sampler(tmp_path, jetson):
    fakes.write(tmp_path, "run/jtop.sock", "")
    return JtopSampler(interval_s=0.2, root=tmp_path, factory=lambda interval: jetson)


def test_jtop_readings_use_instantaneous_power_never_its_average(tmp_path):
    jetson = fakes.FakeJtop()
    sampler = jtop_sampler(tmp_path, jetson)
    assert sampler.interval_s == 0.5  # jtop is unstable below 0.5 s
    assert sampler.available() is None and jetson.started
    readings = sampler.sample()
    assert readings["power_w"] == pytest.approx(9.413)  # tot.power, not tot.avg (5.210)
    assert readings["power_w_VDD_SOC"] == pytest.approx(2.126)
    assert sampler.notes["power_w"] == "input rail VDD_IN"
    assert readings["gpu_load_percent"] == pytest.approx(96.3) and readings["gpu_mhz"] == pytest.approx(624.75)
    assert readings["memory_used_bytes"] == 2859200 * 1024
    assert readings["emc_mhz"] == pytest.approx(2133.0) and readings["emc_load_percent"] == 21.0
    assert readings["cpu_percent_system"] == pytest.approx(50.0)  # (25 + 75) / 2 online cores
    assert readings["cpu_mhz"] == pytest.approx(1510.4)
    assert readings["temp_c_cpu"] == 49.03 and "temp_c_cv0" not in readings
    sampler.close()
    assert jetson.closed


def test_jtop_without_its_service_socket_is_unavailable(tmp_path):
    sampler = JtopSampler(root=tmp_path, factory=lambda interval: fakes.FakeJtop())
    assert "jtop.sock does not exist" in sampler.available()


def test_jtop_service_that_refuses_the_connection_is_unavailable(tmp_path):
    jetson = fakes.FakeJtop(start_error=ConnectionRefusedError("The jtop.service is not active"))
    assert "not active" in jtop_sampler(tmp_path, jetson).available()


def test_a_closed_jtop_connection_raises_so_the_monitor_drops_it(tmp_path):
    jetson = fakes.FakeJtop()
    sampler = jtop_sampler(tmp_path, jetson)
    assert sampler.available() is None
    jetson.running = False
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample()


# -- NVML ---------------------------------------------------------------------------------------
def test_nvml_readings_and_units():
    nvml = fakes.fake_nvml(energy_mj=1_234_567, power_mw=301_250)
    sampler = NvmlSampler(0, nvml=nvml)
    assert sampler.available() is None
    readings = sampler.sample()
    assert readings == {
        "gpu_load_percent": 87.0,
        "gpu_memory_used_bytes": float(20 * 2**30),
        "power_w": 301.25,
        "energy_j": 1234.567,
        "gpu_mhz": 1980.0,
        "temp_c_gpu": 61.0,
    }
    assert sampler.notes["gpu"] == "NVIDIA H100 80GB HBM3" and sampler.power_domain == "gpu:0"
    sampler.close()
    sampler.close()
    assert nvml.state.shutdown == 1


def test_nvml_reading_a_gpu_does_not_support_is_left_out_and_named():
    nvml = fakes.fake_nvml(unsupported={"nvmlDeviceGetTotalEnergyConsumption"})
    sampler = NvmlSampler(nvml=nvml)
    assert sampler.available() is None
    assert "energy_j" not in sampler.sample()
    assert sampler.missing == {"energy_j": "NVML: Not Supported"}


@pytest.mark.parametrize("init_error, message", [(9, "Driver Not Loaded"), (12, "Shared Library Not Found")])
def test_nvml_without_a_driver_is_unavailable(init_error, message):
    assert message in NvmlSampler(nvml=fakes.fake_nvml(init_error=init_error)).available()


def test_nvml_index_beyond_the_gpus_is_unavailable_and_shuts_nvml_down():
    nvml = fakes.fake_nvml(devices=1)
    assert "none with index 1" in NvmlSampler(1, nvml=nvml).available()
    assert nvml.state.shutdown == 1


def test_the_fake_nvml_mirrors_the_installed_nvidia_ml_py():
    pynvml = pytest.importorskip("pynvml")
    fake = fakes.fake_nvml()
    names = [name for name in vars(fake) if name.startswith(("nvml", "NVML"))]
    assert [name for name in names if not hasattr(pynvml, name)] == []
    assert fake.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM and fake.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU


# -- psutil and the choice among Jetson sources ---------------------------------------------------
def test_psutil_reads_this_process():
    sampler = PsutilSampler()
    assert sampler.available() is None
    first = sampler.sample()
    assert first["rss_bytes"] > 0 and first["memory_used_bytes"] > 0
    assert sampler.pid == os.getpid()


def test_psutil_of_a_process_that_does_not_exist_is_unavailable():
    assert "cannot read process" in PsutilSampler(pid=2**22 + 12345).available()


def test_first_available_takes_the_sysfs_source_when_jtop_is_absent(tmp_path):
    fakes.orin_nano_tree(tmp_path, 6)
    chosen = FirstAvailable(
        [JtopSampler(root=tmp_path, factory=lambda i: fakes.FakeJtop()), JetsonSysfsSampler(tmp_path)], name="jetson"
    )
    assert chosen.available() is None
    assert chosen.name == "jetson-sysfs" and chosen.power_domain == "jetson-board"
    assert chosen.sample()["power_w"] == pytest.approx(5.072 * 1.264)


def test_first_available_lists_every_reason_when_none_is(tmp_path):
    chosen = FirstAvailable([JetsonSysfsSampler(tmp_path), TegrastatsSampler(root=tmp_path)], name="jetson")
    reason = chosen.available()
    assert reason.startswith("jetson-sysfs: ") and "tegrastats: " in reason

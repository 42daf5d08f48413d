"""Environment capture on fake JetPack 5.1, JetPack 6.2 and x86 file trees: read what is there, never guess."""

import json
import sys
from pathlib import Path

import pytest

from ptqcore.environment import UNKNOWN, collect_environment

JETSON_SPECIFIC = ("device_model", "l4t", "jetpack", "jetpack_package", "power_mode", "power_mode_id", "gpu_mhz")

DPKG_JP5 = """\
Package: nvidia-l4t-core
Status: install ok installed
Architecture: arm64
Version: 35.3.1-20230319081403
Description: NVIDIA Core Package
 A multi-line description
 Version: 0.0 (a continuation line, not a field)

Package: nvidia-jetpack
Status: install ok installed
Priority: standard
Architecture: arm64
Version: 5.1.1-b56
Depends: nvidia-jetpack-runtime (= 5.1.1-b56), nvidia-jetpack-dev (= 5.1.1-b56)

Package: tensorrt
Status: install ok installed
Architecture: arm64
Version: 8.5.2.2-1+cuda11.4

Package: nvidia-opencv
Status: deinstall ok config-files
Version: 5.1.1-b56
"""

NVPMODEL_ORIN = """\
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=MODE_15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MODE_30W >
< POWER_MODEL ID=3 NAME=MODE_50W >
< PM_CONFIG DEFAULT=3 >
"""


def cpuinfo(count, **fields):
    block = "".join(f"{key}\t: {value}\n" for key, value in fields.items())
    return "\n".join(f"processor\t: {i}\n{block}" for i in range(count))


def cudnn_header(major, minor, patch):
    return (
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n"
        "#define CUDNN_VERSION (CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)\n"
    )


def tree(root: Path, files: dict) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def jetpack5(root: Path) -> Path:
    """AGX Orin, JetPack 5.1.1: L4T R35.3.1, CUDA 11.4, cuDNN 8.6 behind the alternatives header."""
    return tree(
        root,
        {
            "proc/device-tree/model": b"NVIDIA Jetson AGX Orin Developer Kit\x00",
            "etc/nv_tegra_release": "# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64,"
            " DATE: Sun Mar 19 15:19:21 UTC 2023\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n",
            "var/lib/dpkg/status": DPKG_JP5,
            "usr/local/cuda/version.json": json.dumps({"cuda": {"name": "CUDA SDK", "version": "11.4.19"}}, indent=3),
            "usr/include/aarch64-linux-gnu/cudnn_version_v8.h": cudnn_header(8, 6, 0),
            "proc/cpuinfo": cpuinfo(12, BogoMIPS="62.50", **{"CPU implementer": "0x41", "CPU part": "0xd42"}),
            "sys/devices/system/cpu/online": "0-11\n",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2201600\n",
            "sys/devices/system/cpu/cpu10/cpufreq/scaling_cur_freq": "729600\n",
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_cur_freq": "2201600\n",
            "sys/class/devfreq/17000000.ga10b/cur_freq": "1300500000\n",
            "sys/class/devfreq/15340000.vic/cur_freq": "115200000\n",
            "etc/nvpmodel.conf": NVPMODEL_ORIN,
            "var/lib/nvpmodel/status": "pmode:0000 fmode:cool\n",
        },
    )


def jetpack6(root: Path) -> Path:
    """Orin Nano Super, JetPack 6.2: L4T R36.4.3, CUDA 12.6, cuDNN 9.3, TensorRT from Python metadata."""
    return tree(
        root,
        {
            "proc/device-tree/model": b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
            "etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64,"
            " DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n",
            "var/lib/dpkg/status": "Package: nvidia-jetpack\nStatus: install ok installed\nArchitecture: arm64\n"
            "Version: 6.2+b77\n\nPackage: tensorrt\nStatus: install ok installed\nVersion: 10.3.0.30-1+cuda12.5\n",
            "usr/local/cuda/version.json": json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.6.68"}}),
            "usr/include/aarch64-linux-gnu/cudnn_version_v9.h": cudnn_header(9, 3, 0),
            "usr/include/aarch64-linux-gnu/cudnn_version_v8.h": cudnn_header(8, 9, 4),
            "proc/cpuinfo": cpuinfo(6, **{"CPU implementer": "0x41", "CPU architecture": "8", "CPU part": "0xd42"}),
            "sys/class/devfreq/17000000.gpu/cur_freq": "1020000000\n",
            "etc/nvpmodel.conf": "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n"
            "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< PM_CONFIG DEFAULT=2 >\n",
            "var/lib/nvpmodel/status": "pmode:0002\n",
        },
    )


def x86(root: Path) -> Path:
    """A desktop with an old CUDA (version.txt) and cuDNN 7 (defines in cudnn.h), no Jetson files."""
    return tree(
        root,
        {
            "proc/cpuinfo": cpuinfo(
                4, vendor_id="GenuineIntel", **{"model name": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"}
            ),
            "usr/local/cuda/version.txt": "CUDA Version 10.2.89\n",
            "usr/include/cudnn.h": cudnn_header(7, 6, 5),
            "sys/devices/system/cpu/online": "0-3\n",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2400000\n",
        },
    )


def fake_versions(**versions):
    return {name.replace("_", "-"): version for name, version in versions.items()}.get


def no_gpu():
    return None


def test_jetpack_5_1(tmp_path):
    env = collect_environment(
        jetpack5(tmp_path),
        version_of=fake_versions(
            onnxruntime_gpu="1.16.0", onnx="1.14.0", torch="2.1.0a0+41361538.nv23.06", torchvision="0.16.1"
        ),
        gpu_probe=lambda: {"name": "Orin", "compute_capability": "8.7"},
    )
    assert env == {
        "device_model": "NVIDIA Jetson AGX Orin Developer Kit",
        "l4t": "35.3.1",
        "jetpack": "5.1.1",
        "jetpack_package": "5.1.1-b56",
        "cuda": "11.4.19",
        "cudnn": "8.6.0",
        "tensorrt": "8.5.2.2-1+cuda11.4",  # no Python metadata: the dpkg package's version
        "onnxruntime": "1.16.0",
        "onnx": "1.14.0",
        "torch": "2.1.0a0+41361538.nv23.06",
        "torchvision": "0.16.1",
        "gpu_name": "Orin",
        "gpu_compute_capability": "8.7",
        "cpu_model": "ARM Cortex-A78AE",
        "cpu_count": 12,
        "cpu_online": "0-11",
        "power_mode": "MAXN",
        "power_mode_id": "0",
        "cpu_mhz": {"cpu0": 2201, "cpu2": 2201, "cpu10": 729},
        "gpu_mhz": 1300,
    }
    assert list(env["cpu_mhz"]) == ["cpu0", "cpu2", "cpu10"]


def test_jetpack_6_2(tmp_path):
    env = collect_environment(
        jetpack6(tmp_path),
        version_of=fake_versions(
            tensorrt="10.3.0", onnxruntime_gpu="1.20.0", onnx="1.17.0", torch="2.5.0a0+872d972e41.nv24.08"
        ),
        gpu_probe=no_gpu,
    )
    assert env["device_model"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert (env["l4t"], env["jetpack"], env["jetpack_package"]) == ("36.4.3", "6.2", "6.2+b77")
    assert (env["cuda"], env["cudnn"]) == ("12.6.68", "9.3.0")
    assert env["tensorrt"] == "10.3.0"  # Python metadata first
    assert (env["torch"], env["torchvision"]) == ("2.5.0a0+872d972e41.nv24.08", UNKNOWN)
    assert (env["gpu_name"], env["gpu_compute_capability"]) == (UNKNOWN, UNKNOWN)
    assert (env["cpu_model"], env["cpu_count"], env["cpu_online"]) == ("ARM Cortex-A78AE", 6, UNKNOWN)
    assert (env["power_mode"], env["power_mode_id"]) == ("MAXN_SUPER", "2")
    assert (env["cpu_mhz"], env["gpu_mhz"]) == (UNKNOWN, 1020)


def test_plain_x86_has_every_jetson_fact_unknown(tmp_path):
    env = collect_environment(
        x86(tmp_path), version_of=fake_versions(onnxruntime="1.18.0", torch="2.3.0"), gpu_probe=no_gpu
    )
    assert {name: env[name] for name in JETSON_SPECIFIC} == dict.fromkeys(JETSON_SPECIFIC, UNKNOWN)
    assert (env["cuda"], env["cudnn"], env["tensorrt"]) == ("10.2.89", "7.6.5", UNKNOWN)
    assert env["cpu_model"] == "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"
    assert (env["cpu_count"], env["cpu_online"], env["cpu_mhz"]) == (4, "0-3", {"cpu0": 2400})


def test_an_empty_tree_is_all_unknown(tmp_path):
    env = collect_environment(tmp_path, version_of=fake_versions(), gpu_probe=no_gpu)
    assert set(env.values()) == {UNKNOWN}


def test_nothing_is_guessed_from_neighbouring_facts(tmp_path):
    jetpack5(tmp_path)
    # JetPack removed (L4T stays), nvpmodel status gone (only the default mode is known), garbled release file
    removed = DPKG_JP5.replace(
        "nvidia-jetpack\nStatus: install ok installed", "nvidia-jetpack\nStatus: deinstall ok config-files"
    )
    assert removed != DPKG_JP5
    (tmp_path / "var/lib/dpkg/status").write_text(removed)
    (tmp_path / "var/lib/nvpmodel/status").unlink()
    (tmp_path / "etc/nv_tegra_release").write_text("R35 something else\n")
    env = collect_environment(tmp_path, version_of=fake_versions(), gpu_probe=no_gpu)
    assert (env["jetpack"], env["jetpack_package"]) == (UNKNOWN, UNKNOWN)
    assert (env["power_mode"], env["power_mode_id"]) == (UNKNOWN, UNKNOWN)
    assert env["l4t"] == UNKNOWN


def test_a_mode_missing_from_the_conf_keeps_its_id_only(tmp_path):
    jetpack5(tmp_path)
    (tmp_path / "var/lib/nvpmodel/status").write_text("pmode:0007\n")
    env = collect_environment(tmp_path, version_of=fake_versions(), gpu_probe=no_gpu)
    assert (env["power_mode"], env["power_mode_id"]) == (UNKNOWN, "7")


def test_tensorrt_version_comes_from_metadata_without_importing_it(tmp_path, monkeypatch):
    package = tree(
        tmp_path / "site",
        {
            "tensorrt/__init__.py": "raise ImportError('ptqcore must not import tensorrt to read its version')\n",
            "tensorrt-10.3.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tensorrt\nVersion: 10.3.0\n",
        },
    )
    monkeypatch.syspath_prepend(str(package))
    env = collect_environment(tmp_path / "root", gpu_probe=no_gpu)
    assert env["tensorrt"] == "10.3.0"
    assert "tensorrt" not in sys.modules


@pytest.mark.parametrize("name", ["onnx", "onnxruntime", "torch"])
def test_this_machine_reports_the_installed_libraries(name):
    from importlib import metadata

    env = collect_environment(gpu_probe=no_gpu)
    assert env[name] == metadata.version(name)
    assert all(isinstance(value, (str, int, dict)) for value in env.values())

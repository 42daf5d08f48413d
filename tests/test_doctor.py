"""``ptqcore doctor``: the judgement on simulated Jetsons and this machine, and the command itself.

The simulated machines are the installs issue 25 found (torch, numpy, onnxruntime versions as pip
resolves them for aarch64 on JetPack 5 / 6, NVIDIA's builds where JetPack ships them)."""

from dataclasses import replace
from pathlib import Path

import pytest

from ptqcore.cli import main
from ptqcore.doctor import Facts, OrtFacts, TorchFacts, findings, gather, is_jetson, jetpack_line, jtop_service_version, render

ORIN = {"device_model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6.0",
        "jetpack_package": "6.0+b106", "cuda": "12.2", "power_mode": "15W", "power_mode_id": "0",
        "cpu_mhz": {"cpu0": 1510}, "gpu_mhz": 624}
NVIDIA_TORCH = TorchFacts("2.3.0a0+40ec155e58.nv24.03", "/usr/local/lib/python3.10/dist-packages/torch (outside"
                          " this environment: system packages)", "12.2", True, ("sm_72", "sm_87"), "sm_87")
ORT_GPU = OrtFacts("1.17.0", "/usr/local/lib/python3.10/dist-packages/onnxruntime", "onnxruntime-gpu",
                   ("onnxruntime-gpu",), ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))


def orin(**changes) -> Facts:
    base = dict(machine="aarch64", python="3.10.12", environment=ORIN, jetson=True, numpy="1.26.4", torch=NVIDIA_TORCH,
                onnxruntime=ORT_GPU, tensorrt="8.6.2.3", tensorrt_reason=None, jtop_client="4.2.12",
                jtop_service="4.2.12", kernel_probe="")
    base.update(changes)
    return Facts(**base)


def errors(facts: Facts):
    return [f.problem for f in findings(facts) if f.fatal]


def test_a_healthy_orin_measures_what_it_says():
    text, status = render(findings(orin()))
    assert status == 0 and errors(orin()) == []
    assert "JetPack 6.0 (nvidia-jetpack 6.0+b106), L4T 36.3.0" in text and "mode 15W" in text
    assert "CUDAExecutionProvider" in text and "TensorRT 8.6.2.3: its cases run" in text


def test_pypi_cpu_torch_beside_jetpack_5_tensorrt_is_an_error_that_names_the_cause():
    cpu_torch = TorchFacts("2.4.1", "/home/u/.venv/lib/python3.8/site-packages/torch (this environment)", None, False)
    jp5 = orin(environment={**ORIN, "l4t": "35.3.1", "jetpack": "5.1.1"}, torch=cpu_torch, tensorrt="8.5.2.2",
               tensorrt_reason="PyTorch sees no CUDA GPU")
    (problem,) = errors(jp5)
    assert "TensorRT 8.5.2.2 is installed but PyTorch sees no CUDA GPU (a CPU-only build)" in problem
    assert render(findings(jp5))[1] == 1


def test_an_sbsa_torch_on_a_jetson_is_named_as_such():
    sbsa = TorchFacts("2.14.1+cu130", "/v/site-packages/torch (this environment)", "13.0", False,
                      ("sm_80", "sm_90", "sm_100", "sm_120"))
    (problem,) = errors(orin(torch=sbsa, tensorrt_reason="PyTorch sees no CUDA GPU"))
    assert "desktop / server GPUs (SBSA), not NVIDIA's Jetson build" in problem


def test_a_torch_built_without_this_gpus_architecture_is_an_error():
    (problem,) = errors(orin(torch=TorchFacts("2.5.0", "x", "12.4", True, ("sm_80", "sm_90"), "sm_87")))
    assert "this GPU is sm_87, which the torch build does not include (sm_80,sm_90)" in problem


def test_numpy_2_under_a_numpy_1_torch_is_an_error_with_the_fix():
    broken = replace(NVIDIA_TORCH, numpy_error="Numpy is not available")
    found = [f for f in findings(orin(numpy="2.2.6", torch=broken)) if f.fatal]
    assert [f.topic for f in found] == ["numpy"] and "numpy<2" in found[0].fix and "numpy 2.2.6" in found[0].says


def test_a_cpu_onnxruntime_shadowing_onnxruntime_gpu_is_an_error():
    shadowed = OrtFacts("1.19.2", "/v/site-packages/onnxruntime (this environment)", "onnxruntime",
                        ("onnxruntime", "onnxruntime-gpu"), ("AzureExecutionProvider", "CPUExecutionProvider"))
    (problem,) = errors(orin(onnxruntime=shadowed))
    assert "onnxruntime-gpu is installed but the active onnxruntime has no CUDA provider" in problem
    # the CPU build alone on a Jetson is what its records say (device cpu): a note, not an error
    alone = OrtFacts("1.19.2", "x", "onnxruntime", ("onnxruntime",), ("CPUExecutionProvider",))
    assert errors(orin(onnxruntime=alone)) == [] and any("CPU cores" in (f.problem or "") for f in findings(orin(onnxruntime=alone)))


def test_a_jtop_client_of_another_version_than_the_service_is_a_note_with_the_pin():
    found = [f for f in findings(orin(jtop_client="4.3.2")) if f.topic == "jtop"]
    assert found[0].fix == "pip install jetson-stats==4.2.12" and not found[0].fatal


def test_jetpack_is_named_by_its_package_else_only_its_major_release_by_l4t():
    assert jetpack_line({"l4t": "35.4.1", "jetpack": "unknown"}) == \
        "JetPack 5.x by its L4T release (no nvidia-jetpack package), L4T 35.4.1"
    assert jetpack_line({"l4t": "unknown", "jetpack": "unknown"}).startswith("JetPack unknown")


def test_a_board_tree_is_read_for_jetson_and_the_jtop_service(tmp_path):
    assert not is_jetson(tmp_path, {})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref\n")
    (tmp_path / "usr/local/lib/python3.8/dist-packages/jetson_stats-4.2.3.dist-info").mkdir(parents=True)
    assert is_jetson(tmp_path, {}) and jtop_service_version(tmp_path) == "4.2.3"
    facts = gather(tmp_path, probe_kernels=False)
    assert facts.jetson and facts.environment["l4t"] == "35.3.1" and facts.jtop_service == "4.2.3"
    assert any(f.topic == "board" and "JetPack 5.x by its L4T release" in f.says for f in findings(facts))


def test_the_command_reports_this_machine_and_exits_with_its_verdict(capsys):
    status = main(["doctor", "--no-kernel-probe"])
    text = capsys.readouterr().out
    assert text.startswith("ptqcore doctor:") and "  torch " in text and "  onnxruntime " in text
    assert status == render(findings(gather(Path("/"), probe_kernels=False)))[1]


@pytest.mark.parametrize("facts", [orin(), orin(torch=None), orin(onnxruntime=None)])
def test_every_problem_line_names_a_fix(facts):
    assert all(f.fix for f in findings(facts) if f.problem)


def test_doctor_reads_a_jetpack_6_board_tree_with_its_package_and_power_mode(tmp_path):
    """The JetPack 6.1 board the install simulation stands for: nvidia-jetpack installed, nvpmodel set."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic\n")
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: nvidia-jetpack\nStatus: install ok installed\nVersion: 6.1+b123\n\n")
    (tmp_path / "var/lib/nvpmodel").mkdir(parents=True)
    (tmp_path / "var/lib/nvpmodel/status").write_text("pmode:0000 fmode:fanNull\n")
    (tmp_path / "etc/nvpmodel.conf").write_text("< POWER_MODEL ID=0 NAME=15W >\n")
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit\0")
    facts = gather(tmp_path, probe_kernels=False)
    board = next(f for f in findings(facts) if f.topic == "board")
    assert "JetPack 6.1 (nvidia-jetpack 6.1+b123), L4T 36.4.0" in board.says and "Orin Nano" in board.says
    assert any(f.topic == "power" and "mode 15W (id 0)" in f.says for f in findings(facts))
    # this x86 VM's CPU torch and onnxruntime on a Jetson: the note says the ONNX Runtime cases run on the CPU
    assert any(f.topic == "onnxruntime" and f.problem and "CPU cores" in f.problem for f in findings(facts))

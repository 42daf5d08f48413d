"""The acceptance helper ``scripts/accept_tensorrt.py``: trtexec output, pinned flags, records, verdicts.

The trtexec outputs are the 8.5 and 10.3 samples in ``tests/data/tensorrt/``; the end-to-end test
stands a shell script in for trtexec that prints one of them.
"""

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ptqcore.results.runfile import run_file_from_document

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "tensorrt"
_spec = importlib.util.spec_from_file_location("accept_tensorrt", ROOT / "scripts" / "accept_tensorrt.py")
accept = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = accept  # dataclasses look their module up
_spec.loader.exec_module(accept)


@pytest.mark.parametrize("log, version, median, p99", [
    ("trtexec-8.5.2.log", "8.5.2", 1.16504, 1.26416),
    ("trtexec-10.3.0.log", "10.3.0", 8.07617, 8.40991),
])
def test_gpu_compute_time_and_version_are_read_from_trtexec_output(log, version, median, p99):
    text = (DATA / log).read_text()
    stats = accept.parse_gpu_compute(text)
    assert stats["median"] == median and stats["p99"] == p99
    assert set(stats) == {"min", "max", "mean", "median", "p90", "p95", "p99"}
    assert accept.trtexec_version(text) == version


def test_older_summaries_and_banner_versions():
    line = "[05/29/2022-21:55:54] [I] GPU Compute Time: min = 33.4643 ms, max = 34.8665 ms, mean = 33.664 ms, median = 33.5995 ms, percentile(99%) = 34.8665 ms"
    assert accept.parse_gpu_compute(line) == {"min": 33.4643, "max": 34.8665, "mean": 33.664, "median": 33.5995, "p99": 34.8665}
    assert accept.parse_gpu_compute("[I] Total GPU Compute Time: 2.9 s\n") is None
    assert accept.trtexec_version("&&&& PASSED TensorRT.trtexec [TensorRT v8401]") == "8.4.1"
    assert accept.trtexec_version("&&&& PASSED TensorRT.trtexec [TensorRT v101100]") == "10.11.0"


#: The lines of trtexec's --help that decide the flags, verbatim from NVIDIA/TensorRT
#: samples/common/sampleOptions.cpp on release/8.5, release/10.3 (the same lines) and release/11.0.
HELP_8_5 = """\
  --exposeDMA                 Serialize DMA transfers to and from device (default = disabled).
  --noDataTransfers           Disable DMA transfers to and from device (default = enabled).
  --useSpinWait               Actively synchronize on GPU events. This option may decrease synchronization time but increase CPU usage and power (default = disabled)
  --useCudaGraph              Use CUDA graph to capture engine execution and then launch inference (default = disabled).
"""
HELP_10_3 = HELP_8_5
HELP_11_0 = """\
  --exposeDMA                 Serialize DMA transfers to and from device (default = disabled).
  --includeDataTransfers      Enable DMA transfers to and from device (default = disabled). Note some device-to-host
  --noDataTransfers           [Deprecated] DMA transfers are now disabled by default. This flag is a no-op.
  --noSpinWait                Disable spin wait and use blocking synchronization instead. This may reduce CPU usage
  --useSpinWait               [Deprecated] Spin wait is now enabled by default. This flag is a no-op.
  --noCudaGraph               Disable CUDA graph capture and launch (default = CUDA graph enabled).
  --useCudaGraph              [Deprecated] CUDA graph is now enabled by default. This flag is a no-op.
"""
PINNED = ["--iterations=200", "--warmUp=500", "--duration=0"]


@pytest.mark.parametrize("help_text, cuda_graph, expected", [
    (HELP_8_5, False, PINNED + ["--exposeDMA", "--useSpinWait", "--noDataTransfers"]),
    (HELP_8_5, True, PINNED + ["--exposeDMA", "--useSpinWait", "--noDataTransfers", "--useCudaGraph"]),
    (HELP_10_3, False, PINNED + ["--exposeDMA", "--useSpinWait", "--noDataTransfers"]),
    (HELP_10_3, True, PINNED + ["--exposeDMA", "--useSpinWait", "--noDataTransfers", "--useCudaGraph"]),
    (HELP_11_0, False, PINNED + ["--exposeDMA", "--noCudaGraph"]),  # spin-wait, no transfers, graphs: defaults
    (HELP_11_0, True, PINNED + ["--exposeDMA"]),
], ids=["8.5", "8.5-graph", "10.3", "10.3-graph", "11.x", "11.x-graph"])
def test_flags_are_pinned_per_version_and_follow_the_runs_cuda_graph(help_text, cuda_graph, expected):
    assert accept.pinned_flags(help_text, 200, cuda_graph) == expected


def test_flags_are_limited_to_what_this_trtexec_knows():
    assert accept.pinned_flags("", 200) == PINNED
    assert accept.pinned_flags("", 200, cuda_graph=True) == PINNED + ["--useCudaGraph"]
    assert accept.graph_flags("--noCudaGraph-like", False) == []  # a longer name is not the flag


def stand_in_trtexec(tmp_path, help_text=None):
    """An executable that prints ``help_text`` for ``--help``, else records its arguments in
    ``tmp_path/args`` and prints the 8.5.2 log (what the acceptance script parses)."""
    trtexec = tmp_path / "trtexec"
    lines = ["#!/bin/sh"]
    if help_text is not None:
        (tmp_path / "help.txt").write_text(help_text)
        lines.append(f'if [ "$1" = "--help" ]; then cat {tmp_path / "help.txt"}; exit 0; fi')
    lines += [f'echo "$@" > {tmp_path / "args"}', f'cat {DATA / "trtexec-8.5.2.log"}']
    trtexec.write_text("\n".join(lines) + "\n")
    trtexec.chmod(trtexec.stat().st_mode | stat.S_IEXEC)
    return trtexec


def graph_record(case, engine, cuda_graph):
    out = record(case, engine=engine, p50=1.18, shape={"input": [1, 3, 224, 224]})
    if cuda_graph is not None:
        out["cuda_graph"] = cuda_graph
    return out


@pytest.mark.parametrize("version, help_text", [("8.5", HELP_8_5), ("10.3", HELP_10_3), ("11.x", HELP_11_0)])
@pytest.mark.parametrize("cuda_graph", [False, True, None])
def test_command_lines_per_version_and_graph_setting(tmp_path, capsys, version, help_text, cuda_graph):
    trtexec = stand_in_trtexec(tmp_path, help_text)
    run = tmp_path / "run.json"
    engine = str(tmp_path / "a.engine")
    run.write_text(json.dumps({"benchmarks": [], "ptqcore": {"schema_version": 1, "records": [
        graph_record("m-fp16-tensorrt-cuda-b1", engine, cuda_graph)]}}))
    assert accept.main([str(run), "--trtexec", str(trtexec), "--iterations", "200"]) == 0
    out = capsys.readouterr().out
    args = (tmp_path / "args").read_text().split()
    graphs = {"8.5": ["--useCudaGraph"], "10.3": ["--useCudaGraph"], "11.x": []}[version] if cuda_graph else \
        {"8.5": [], "10.3": [], "11.x": ["--noCudaGraph"]}[version]
    others = [] if version == "11.x" else ["--useSpinWait", "--noDataTransfers"]
    assert args == [f"--loadEngine={engine}", *PINNED, "--exposeDMA", *others, *graphs, "--shapes=input:1x3x224x224"]
    assert ("no CUDA graphs" in out) == (not cuda_graph)
    assert ("(not recorded)" in out) == (cuda_graph is None)


def record(case, status="passed", engine="/e.engine", p50=1.2, shape=None, backend="tensorrt"):
    """A record with the identity fields every record has and the figures the script reads."""
    out = {"case": case, "model": case.split("-")[0], "precision": "fp16", "backend": backend, "device": "cuda",
           "batch_size": 1, "dataset": "digits", "calibration": None, "status": status, "engine_path": engine,
           "gpu_compute_ms": None if p50 is None else {"p50": p50, "p90": p50}}
    if shape:
        out["engine_input_shape"] = shape
    return out


def test_tensorrt_records_are_taken_from_the_run():
    document = {"benchmarks": [], "ptqcore": {"schema_version": 1, "records": [
        record("m-fp16-tensorrt-cuda-b1"), record("m-int8-onnxruntime-cpu-b1", backend="onnxruntime"),
        record("m-int8-tensorrt-cuda-b1", status="skipped"), record("m-fp32-tensorrt-cuda-b1", p50=None),
    ]}}
    cases = accept.tensorrt_cases(run_file_from_document(document).records)
    assert [c.case for c in cases] == ["m-fp16-tensorrt-cuda-b1", "m-fp32-tensorrt-cuda-b1"]
    assert cases[0].gpu_compute_p50_ms == 1.2 and cases[1].gpu_compute_p50_ms is None


def test_verdict_is_within_five_percent():
    assert accept.verdict(1.05, 1.0) == "PASS" and accept.verdict(0.951, 1.0) == "PASS"
    assert accept.verdict(1.06, 1.0) == "FAIL" and accept.verdict(0.94, 1.0) == "FAIL"
    assert accept.verdict(None, 1.0) == "FAIL" and accept.verdict(1.0, None) == "FAIL"
    assert accept.verdict(1.08, 1.0, tolerance=0.1) == "PASS"


def test_end_to_end_with_a_stand_in_trtexec(tmp_path, capsys):
    trtexec = stand_in_trtexec(tmp_path, "--useSpinWait --noDataTransfers --useCudaGraph\n")
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"benchmarks": [], "ptqcore": {"schema_version": 1, "records": [
        record("mobilenet_v3_small-fp16-tensorrt-cuda-b1", engine=str(tmp_path / "a.engine"), p50=1.18,
               shape={"input": [1, 3, 224, 224]}),
        record("resnet18-int8-tensorrt-cuda-b1", engine=str(tmp_path / "b.engine"), p50=1.40,
               shape={"input": [1, 3, 224, 224]}),
        record("resnet18-fp32-tensorrt-cuda-b1", status="failed", p50=None),
    ]}}))
    status = accept.main([str(run), "--trtexec", str(trtexec), "--iterations", "50", "--logs", str(tmp_path / "logs")])
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["case", "ptqcore"]
    assert "mobilenet_v3_small-fp16-tensorrt-cuda-b1" in lines[1] and "PASS" in lines[1] and "+1.3%" in lines[1]
    assert "FAIL" in lines[2] and "+20.2%" in lines[2]
    assert "FAIL" in lines[3] and "case failed, no gpu_compute_ms" in lines[3]
    assert lines[-1].startswith("FAIL: 1 of 3 engines within 5%")
    args = (tmp_path / "args").read_text().split()
    assert args[:1] == [f"--loadEngine={tmp_path / 'b.engine'}"]
    assert {"--iterations=50", "--useSpinWait", "--noDataTransfers", "--shapes=input:1x3x224x224"} <= set(args)
    assert "--useCudaGraph" not in args
    assert (tmp_path / "logs" / "resnet18-int8-tensorrt-cuda-b1.log").is_file()


def test_unusable_input_exits_2(tmp_path, capsys):
    assert accept.main([str(tmp_path / "missing.json"), "--trtexec", "/bin/true"]) == 2
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"benchmarks": [], "ptqcore": {"schema_version": 1, "records": []}}))
    assert accept.main([str(run), "--trtexec", "/bin/true"]) == 2
    assert "no TensorRT case" in capsys.readouterr().err
    if not os.path.exists(accept.JETPACK_TRTEXEC):
        assert accept.main([str(run), "--trtexec", str(tmp_path / "nope")]) == 2


def test_the_shell_script_runs_the_documented_steps():
    script = (ROOT / "scripts" / "accept-tensorrt.sh").read_text()
    assert "--system-site-packages" in script
    assert "--ptq-backends tensorrt" in script and "mobilenet_v3_small,resnet18" in script
    assert "--ptq-profile-layers" in script  # TensorRT's per-layer profile, on the board
    assert "PTQ_CUDA_GRAPH" in script and "--ptq-trt-cuda-graph" in script  # the run's graphs reach trtexec
    assert "--exposeDMA" in script and "--useCudaGraph" in script and "--noCudaGraph" in script
    assert "--benchmark-json" in script and "accept_tensorrt.py" in script
    assert os.access(ROOT / "scripts" / "accept-tensorrt.sh", os.X_OK)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/b", "..", ".hidden", "", "x\x00y", "\udcff"])
def test_log_paths_stay_inside_the_logs_folder(tmp_path, name):
    path = accept.log_path(tmp_path / "logs", name)
    assert path.parent == tmp_path / "logs" and path.name.endswith(".log") and not path.name.startswith(".")
    assert accept.log_path(tmp_path / "logs", name) == path
    plain = "resnet18-int8-tensorrt-cuda-b1"
    assert accept.log_path(tmp_path / "logs", plain).name == f"{plain}.log"
    assert accept.log_path(tmp_path / "logs", "a_b") != accept.log_path(tmp_path / "logs", "a/b")


def test_case_names_from_the_run_cannot_write_outside_the_logs(tmp_path, capsys):
    trtexec = stand_in_trtexec(tmp_path)
    run = tmp_path / "deep" / "er" / "run.json"
    run.parent.mkdir(parents=True)
    names = ["../../escaped-tensorrt", "/tmp/abs-tensorrt"]
    run.write_text(json.dumps({"benchmarks": [], "ptqcore": {"schema_version": 1, "records": [
        record(name, engine=str(tmp_path / "a.engine"), p50=1.18, shape={"input": [1, 3, 224, 224]}) for name in names
    ]}}))
    logs = tmp_path / "deep" / "er" / "logs"
    accept.main([str(run), "--trtexec", str(trtexec), "--logs", str(logs)])
    capsys.readouterr()
    written = sorted(p.name for p in logs.iterdir())
    assert len(written) == 2 and all(name.endswith(".log") for name in written)
    assert not (tmp_path / "deep" / "escaped-tensorrt.log").exists() and not Path("/tmp/abs-tensorrt.log").exists()

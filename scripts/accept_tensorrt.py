#!/usr/bin/env python3
"""Acceptance check of ptqcore's TensorRT backend: its GPU compute time against trtexec's.

For every TensorRT case of a benchmark run (``pytest benchmarks/ --ptq-backends tensorrt
--benchmark-json RUN.json``) this runs ``trtexec --loadEngine=ENGINE`` on the very engine
ptqcore timed (the record's ``engine_path``) and compares trtexec's "GPU Compute Time" median
with the record's ``gpu_compute_ms`` p50. A case passes when they are within ``--tolerance``
(default 5%) of each other. trtexec's settings are pinned so that TensorRT 8.x, 10.x and 11.x
measure the same thing (11 changed trtexec's defaults): ``--exposeDMA`` (one iteration in flight,
as ptqcore synchronizes after each call), spin-wait synchronisation, no host<->device transfers,
CUDA graphs on or off as the record's ``cuda_graph`` says the suite ran (``--useCudaGraph`` up to
10.x, ``--noCudaGraph`` from 11.0, where graphs are the default), a fixed warm-up and iteration
count, and the engine's optimization-profile shape. Only flags that this trtexec's ``--help``
lists (and does not mark deprecated) are passed.

    python scripts/accept_tensorrt.py RUN.json [--trtexec PATH] [--iterations 1000]
                                      [--tolerance 0.05] [--logs DIR]

Prints one row per case and a verdict line. Exit status: 0 every case passed, 1 a case failed or
could not be measured, 2 the run file is unusable or trtexec cannot be found.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

TOLERANCE = 0.05
#: Where JetPack puts trtexec (it is not on PATH there).
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([-+0-9.eE]+)\s*ms")


def parse_gpu_compute(text: str) -> Optional[Dict[str, float]]:
    """trtexec's last "GPU Compute Time: min = ..., max = ..., mean = ..., median = ..." line as
    ``{"min", "max", "mean", "median", "p90", "p95", "p99"}`` (milliseconds; the percentiles the
    line has), or None when the output has no such line."""
    lines = [line for line in text.splitlines() if "GPU Compute Time:" in line and "Total" not in line]
    if not lines:
        return None
    stats: Dict[str, float] = {}
    for name, percentile, value in _STAT.findall(lines[-1].split("GPU Compute Time:", 1)[1]):
        key = f"p{float(percentile):g}" if percentile else name
        stats[key] = float(value)
    return stats if "median" in stats else None


def trtexec_version(text: str) -> Optional[str]:
    """The TensorRT version trtexec reports ("TensorRT version: 8.5.2" or "[TensorRT v8502]")."""
    match = re.search(r"TensorRT version:\s*([\d.]+\d)", text)
    if match:
        return match.group(1)
    match = re.search(r"\[TensorRT v(\d+)\]", text)
    if not match:
        return None
    number = int(match.group(1))
    if number >= 100000:  # 10.x and later: major * 10000 + minor * 100 + patch
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"  # 8.x: major * 1000 + minor * 100 + patch


def _listed(help_text: str, flag: str) -> bool:
    """``flag`` is in this trtexec's ``--help`` and not marked ``[Deprecated]`` (a no-op there)."""
    match = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])([^\n]*)", help_text)
    return bool(match) and not match.group(1).strip().startswith("[Deprecated]")


def graph_flags(help_text: str, cuda_graph: bool) -> List[str]:
    """The CUDA-graph flag that makes trtexec run as the suite ran (``cuda_graph`` of the record).

    Up to 10.x trtexec runs without graphs unless ``--useCudaGraph`` is given; from 11.0 graphs
    are on by default, ``--noCudaGraph`` turns them off and ``--useCudaGraph`` is a deprecated no-op
    (NVIDIA/TensorRT ``samples/common/sampleOptions.cpp``: ``bool graph{false}`` on release/8.5 and
    10.3, ``graph{true}`` and ``--noCudaGraph`` on release/11.0). Which case applies is read from
    ``--help``: a trtexec that lists ``--noCudaGraph`` has graphs on by default.
    """
    if _listed(help_text, "--noCudaGraph"):
        return [] if cuda_graph else ["--noCudaGraph"]
    return ["--useCudaGraph"] if cuda_graph else []


def pinned_flags(help_text: str, iterations: int, cuda_graph: bool = False) -> List[str]:
    """The settings every comparison runs with, limited to the flags this trtexec knows.

    ``--exposeDMA``: one iteration in flight at a time, as ptqcore's runner synchronizes after
    every call, so both time the same interval (see ``ptqcore.backends.cuda``). Spin-wait and no
    transfers are 11.x's defaults (their flags are deprecated no-ops there, so not passed). Then
    :func:`graph_flags` for ``cuda_graph``.
    """
    flags = [f"--iterations={iterations}", "--warmUp=500", "--duration=0"]
    for flag in ("--exposeDMA", "--useSpinWait", "--noDataTransfers"):
        if _listed(help_text, flag):
            flags.append(flag)
    return flags + graph_flags(help_text, cuda_graph)


@dataclass(frozen=True)
class EngineCase:
    """One TensorRT case of the run: its engine, input shape and ptqcore's GPU compute median."""

    case: str
    engine: Optional[str]
    input_shape: Optional[Dict[str, List[int]]]
    gpu_compute_p50_ms: Optional[float]
    status: str
    cuda_graph: Optional[bool] = None  # the record's cuda_graph: None when the record has none


def tensorrt_cases(records: Sequence[Mapping]) -> List[EngineCase]:
    """The TensorRT records of a ptqcore run (:attr:`ptqcore.results.runfile.RunFile.records`), skipped ones left out."""
    cases = []
    for record in records:
        if record.get("backend") != "tensorrt" or record.get("status") == "skipped":
            continue
        gpu = record.get("gpu_compute_ms")
        cases.append(EngineCase(
            case=str(record.get("case")),
            engine=record.get("engine_path"),
            input_shape=record.get("engine_input_shape"),
            gpu_compute_p50_ms=gpu.get("p50") if isinstance(gpu, dict) else None,
            status=str(record.get("status")),
            cuda_graph=record["cuda_graph"] if isinstance(record.get("cuda_graph"), bool) else None,
        ))
    return cases


def shapes_flag(case: EngineCase) -> Optional[str]:
    """``--shapes=name:NxCxHxW`` for the engine's dynamic input: from the record, else from the engine."""
    shapes = case.input_shape
    if not shapes:
        from ptqcore.backends.tensorrt import engine_io_shapes

        shapes = {name: tensor["profile"][1] for name, tensor in engine_io_shapes(Path(case.engine)).items()
                  if tensor["input"] and tensor["profile"]}
    if not shapes:
        return None
    return "--shapes=" + ",".join(f"{name}:{'x'.join(str(d) for d in shape)}" for name, shape in shapes.items())


def verdict(ptqcore_ms: Optional[float], trtexec_ms: Optional[float], tolerance: float = TOLERANCE) -> str:
    """PASS when both figures exist and ptqcore's is within ``tolerance`` of trtexec's."""
    if ptqcore_ms is None or trtexec_ms is None or trtexec_ms <= 0:
        return "FAIL"
    return "PASS" if abs(ptqcore_ms / trtexec_ms - 1.0) <= tolerance + 1e-9 else "FAIL"  # 1e-9: float rounding


def find_trtexec(given: Optional[str]) -> Optional[str]:
    for candidate in (given, os.environ.get("TRTEXEC"), shutil.which("trtexec"), JETPACK_TRTEXEC):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class Row:
    case: str
    ptqcore_ms: Optional[float]
    trtexec_ms: Optional[float]
    verdict: str
    note: str = ""

    def cells(self) -> List[str]:
        def ms(value: Optional[float]) -> str:
            return "-" if value is None else f"{value:.4f}"

        change = "-" if None in (self.ptqcore_ms, self.trtexec_ms) else f"{self.ptqcore_ms / self.trtexec_ms - 1:+.1%}"
        return [self.case, ms(self.ptqcore_ms), ms(self.trtexec_ms), change, self.verdict, self.note]


def render(rows: Sequence[Row], tolerance: float) -> str:
    header = ["case", "ptqcore p50 ms", "trtexec median ms", "change", "verdict", "note"]
    table = [header] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    passed = sum(row.verdict == "PASS" for row in rows)
    lines.append(f"{'PASS' if rows and passed == len(rows) else 'FAIL'}: {passed} of {len(rows)} engines within "
                 f"{tolerance:.0%} of trtexec's GPU compute median")
    return "\n".join(lines)


def log_path(logs: Path, case: str) -> Path:
    """``logs/CASE.log``, always inside ``logs`` whatever the case name in the run file says.

    A name that is not a plain file name (``../../x``, ``a/b``, ``.hidden``, control characters)
    has every other character replaced by ``_`` and a short hash of the original appended, so two
    different names never share a log.
    """
    safe = re.sub(r"[^A-Za-z0-9_.+=-]", "_", case).lstrip(".")[:150]
    if safe != case or not safe:
        safe = f"{safe or 'case'}-{hashlib.sha256(case.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return logs / f"{safe}.log"


def measure(case: EngineCase, trtexec: str, help_text: str, iterations: int, logs: Optional[Path]) -> Row:
    if case.status != "passed" or not case.engine or case.gpu_compute_p50_ms is None:
        missing = "engine_path" if not case.engine else "gpu_compute_ms" if case.gpu_compute_p50_ms is None else ""
        note = f"case {case.status}" + (f", no {missing} in its record" if missing else "")
        return Row(case.case, case.gpu_compute_p50_ms, None, "FAIL", note)
    command = [trtexec, f"--loadEngine={case.engine}", *pinned_flags(help_text, iterations, bool(case.cuda_graph))]
    shapes = shapes_flag(case)
    if shapes:
        command.append(shapes)
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    output = run.stdout + run.stderr
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        log_path(logs, case.case).write_text(" ".join(command) + "\n" + output)
    stats = parse_gpu_compute(output)
    if run.returncode != 0 or stats is None:
        return Row(case.case, case.gpu_compute_p50_ms, None, "FAIL", f"trtexec exited {run.returncode} without a GPU Compute Time")
    median = stats["median"]
    graphs = {True: "CUDA graphs", False: "no CUDA graphs", None: "no CUDA graphs (not recorded)"}[case.cuda_graph]
    note = ", ".join(filter(None, [trtexec_version(output), graphs]))
    return Row(case.case, case.gpu_compute_p50_ms, median, verdict(case.gpu_compute_p50_ms, median), note)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the pytest-benchmark JSON of a run with --ptq-backends tensorrt")
    parser.add_argument("--trtexec", help=f"trtexec to use (default: $TRTEXEC, PATH, {JETPACK_TRTEXEC})")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--logs", type=Path, help="folder for each trtexec run's output")
    args = parser.parse_args(argv)

    from ptqcore.errors import PtqError
    from ptqcore.results.runfile import load_run_file

    try:
        run = load_run_file(args.run)
    except PtqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trtexec = find_trtexec(args.trtexec)
    if trtexec is None:
        print(f"error: trtexec not found; fix: pass --trtexec PATH or set TRTEXEC (JetPack: {JETPACK_TRTEXEC})", file=sys.stderr)
        return 2
    cases = tensorrt_cases(run.records)
    if not cases:
        print(f"error: {args.run} has no TensorRT case; fix: run pytest benchmarks/ --ptq-backends tensorrt", file=sys.stderr)
        return 2
    help_run = subprocess.run([trtexec, "--help"], capture_output=True, text=True, check=False)
    help_text = help_run.stdout + help_run.stderr
    rows = [measure(case, trtexec, help_text, args.iterations, args.logs) for case in cases]
    print(render(rows, args.tolerance))
    return 0 if all(row.verdict == "PASS" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

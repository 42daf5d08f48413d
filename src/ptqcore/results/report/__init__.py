"""``ptqcore report``: the study's figures and tables from one or more suite runs.

:func:`write_report` reads pytest-benchmark JSON files written by the ptqcore suite (validated by
:func:`ptqcore.results.compare.load_runs`, so bad input raises :class:`~ptqcore.results.compare.CompareError`)
and writes, into the output directory, ``index.html`` (self-contained: inline CSS, figures as
relative ``figures/*.png``), ``report.md`` (the same content as Markdown) and ``figures/``. It
never runs anything: the JSON is the only input. Per run: a table with one row per case and its
headline figures (a skipped or failed case shows its status text, a figure that was not measured
shows "–"), latency, throughput and speed-up, compression overhead, size, accuracy, the trade-off,
the INT8 drop per calibration method and size (a calibration sweep only: :mod:`.calibration_sweep`),
the top layers of each ranked INT8 case and the int8-mixed trade-off (:mod:`.sensitivity`)
and resource use per phase and over time; figures without data are not drawn and the report says
"not measured". With two or more runs: side-by-side bars and the verdicts of
:func:`ptqcore.results.compare.compare_runs` with the first run as the baseline.

Importing this package does not import matplotlib; :func:`write_report` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from ptqcore.errors import PtqError
from ptqcore.results.compare import CompareError, compare_runs
from ptqcore.results.render import COLUMNS, TEXT_VERDICTS, case_lists, format_value, row_cells, verdict_line
from ptqcore.results.report.content import (
    CaseView,
    RunView,
    load_report_runs,
    measured,
    phase_measured,
    unavailable_reasons,
)
from ptqcore.results.report.page import Block, Figure, Heading, Items, Table, Text, render_html, render_markdown

TITLE = "ptqcore report"
NOT_MEASURED = "–"
HEADLINE = ("case", "status", "p50 ms", "p90 ms", "p99 ms", "throughput img/s", "speed-up vs FP32",
            "speed-up vs base", "export s", "build s", "size", "reduction", "top-1", "drop pp",
            "drop: quantization + kernels pp", "CPU % (inference)", "peak RSS (inference)", "energy J/inference")


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the directory, the Markdown text and the figure paths."""

    directory: Path
    markdown: str
    figures: List[Path]


def write_report(paths: Sequence, directory, allow_incomplete: bool = False) -> Report:
    """Render the runs in ``paths`` into ``directory`` (created); see the module docstring.

    Raises :class:`~ptqcore.errors.PtqError` (one line) for unusable runs (an incomplete run
    unless ``allow_incomplete``: then the report says so), a directory or figure that cannot be
    written, and a missing matplotlib ("install ptqcore[plot]").
    """
    runs = load_report_runs(paths, allow_incomplete)
    try:
        from ptqcore.results.report import calibration_sweep, figures, technique_ranking  # matplotlib only from here on
        from ptqcore.results.report import layer_profile as layer_time
        from ptqcore.results.report import sensitivity as layer_sensitivity
    except ImportError as err:
        if not str(getattr(err, "name", "") or "").startswith("matplotlib"):
            raise
        raise PtqError("ptqcore report needs matplotlib, which is not installed",
                       "install ptqcore[plot] (pip install 'ptqcore[plot]')") from None

    directory = Path(directory)
    try:
        (directory / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PtqError(f"cannot create {directory} ({err.strerror})", "pass a writable -o directory") from None
    drawn: List[Path] = []

    def figure(draw, name: str, caption: str, footer: str, *args) -> List[Block]:
        """Draw ``draw(*args, path, footer)``: the figure's block, or [] when it had no data."""
        target = directory / "figures" / f"{name}.png"
        try:
            written = draw(*args, target, footer)
        except OSError as err:
            raise PtqError(f"cannot write {target} ({err.strerror or err})", "pass a writable -o directory") from None
        if written:
            drawn.append(target)
            return [Figure(f"figures/{name}.png", caption)]
        return []

    blocks: List[Block] = [Text(f"{len(runs)} run(s): " + ", ".join(run.name for run in runs)
                                + f". \"{NOT_MEASURED}\" = not measured.")]
    for number, run in enumerate(runs, start=1):
        footer = run.footer()
        prefix = f"run{number}-"
        cases = run.cases
        blocks += [Heading(f"Run {number}: {run.name}"), Text(f"Device: {run.device_text()}. Software: "
                                                              f"{run.software_text()}.")]
        blocks += [Text(note, note=True) for note in run.run.notes]
        blocks += [Heading("Cases", 3), headline_table(cases)]
        blocks += [Heading("Latency, throughput, speed-up", 3)]
        blocks += figure(figures.latency, prefix + "latency", "Latency p50 per case, whiskers to p90, tick at p99 (ms).", footer,
                         cases) or [Text("Latency: not measured in this run.", note=True)]
        blocks += figure(figures.throughput_speedup, prefix + "throughput", "Throughput (images/s), speed-up against"
                         " FP32 on the same backend and device, and against the PyTorch base on the same device"
                         " (p50 / p50; never across devices).", footer, cases)
        if layer_time.profiled(cases):
            blocks += [Heading("Where the time goes, per layer", 3)]
            blocks += figure(layer_time.draw_time, prefix + "layer-time", "The runtime's own per-layer profile"
                             " (--ptq-profile-layers, run apart from the timed rounds; ONNX Runtime's own per-node cost, measured,"
                             " taken off each node): time per inference by category"
                             " (compute; compute left in float in a quantized model; Q/DQ the runtime did not fuse;"
                             " reformat / layout layers) and by op type.", footer, cases)
            blocks += figure(layer_time.draw_changes, prefix + "layer-changes", "INT8 against its float twin (FP32 on"
                             " a CPU, FP16 on a GPU), per layer group (a node with its normalization, activation and"
                             " Q/DQ nodes): the groups whose time changed most.", footer, cases)
            blocks.append(layer_time.table(cases))
        blocks += [Heading("Compression overhead", 3)]
        blocks += figure(figures.overhead, prefix + "overhead", "Export (phase 1) + build (phase 2) time per case,"
                         " stacked; error bars: min-max over the compression rounds. The base model is not"
                         " compressed.", footer, cases) or [Text("Compression overhead: not measured.", note=True)]
        blocks += [Heading("Size and accuracy", 3)]
        blocks += figure(figures.size, prefix + "size", "Model file size before (base) and after, with the reduction"
                         " factor.", footer, cases) or [Text("Size: not measured.", note=True)]
        blocks += figure(figures.accuracy, prefix + "accuracy", "Top-1 accuracy before (grey) and after, with the"
                         " drop in percentage points.", footer, cases) or [Text("Accuracy: not measured.", note=True)]
        blocks += figure(figures.drop_split, prefix + "int8-drop", "INT8 top-1 drop in two parts that add up:"
                         " quantization (fake-quant reference run of the Q/DQ file vs FP32) and kernels (the"
                         " backend vs that reference), with the INT8 recipe and the CPU's INT8 support.", footer, cases)
        if calibration_sweep.is_sweep(cases):
            blocks += figure(calibration_sweep.draw, prefix + "calibration", "INT8 top-1 drop (pp) per calibration"
                             " method and number of calibration images. The subsets are nested (the smaller lie in"
                             " the larger, one seeded order), so the size is the only change.", footer, cases)
            blocks.append(calibration_sweep.table(cases))
        blocks += figure(layer_sensitivity.draw, prefix + "sensitivity", "INT8 layers ranked by the noise their"
                         " quantization adds (noise-to-signal ratio at the layer's output minus at its inputs); in"
                         " orange the layers an int8-mixed case kept in float.", footer, cases)
        if layer_sensitivity.has_mixed(cases):
            blocks.append(layer_sensitivity.table(cases))
        if technique_ranking.is_technique_run(cases):
            blocks += [Heading("Compression techniques", 3)]
            blocks += figure(technique_ranking.draw, prefix + "techniques", "Each compressed case against the"
                             " original model: size reduction (dense files), latency reduction vs the original at FP32"
                             " on the same runtime, top-1 drop, compression time (technique + phase 1 + phase 2);"
                             " cases ordered by their mean rank over the four (in brackets).", footer, cases)
            blocks.append(technique_ranking.table(cases))
        blocks += figure(figures.tradeoff, prefix + "tradeoff", "Accuracy drop (pp) against speed-up vs FP32; marker area"
                         " = model size; cases within 0.1 pp of no drop are not labelled (see the table).", footer, cases) or [Text("Trade-off: not drawn (no compressed case has both a"
                                                           " speed-up and an accuracy drop).", note=True)]
        blocks += [Heading("Resource use", 3)] + resource_blocks(run, figure, figures, prefix)
    if len(runs) > 1:
        blocks += comparison_blocks(runs, figure, figures)
    markdown = render_markdown(TITLE, blocks)
    try:
        (directory / "index.html").write_text(render_html(TITLE, blocks), encoding="utf-8")
        (directory / "report.md").write_text(markdown, encoding="utf-8")
    except OSError as err:
        raise PtqError(f"cannot write into {directory} ({err.strerror})", "pass a writable -o directory") from None
    return Report(directory, markdown, drawn)


def _value(case: CaseView, unit: str, *path: str) -> str:
    value = case.get(*path)
    return NOT_MEASURED if value is None else format_value(value, unit)


def _drop_split(case: CaseView) -> str:
    quantization, kernel = case.get("accuracy_drop_quantization_pp"), case.get("accuracy_drop_kernel_pp")
    if quantization is None or kernel is None:
        return NOT_MEASURED
    return f"{quantization:.2f} + {kernel:.2f}"


def headline_table(cases: Sequence[CaseView]) -> Table:
    """One row per case: status text, then every headline figure ("–" where not measured)."""
    rows, classes = [], []
    for case in cases:
        inference = case.resources().get("inference", {})
        cpu, rss = (inference.get(k) for k in ("cpu_percent_process_mean", "rss_bytes_peak"))
        drop = case.get("accuracy_drop_pp")
        rows.append([
            case.label, case.status_text,
            *(_value(case, "ms", "latency_ms", q) for q in ("p50", "p90", "p99")),
            _value(case, "", "throughput_ips").strip(),
            NOT_MEASURED if case.speedup_fp32 is None else f"{case.speedup_fp32:.2f}x",
            NOT_MEASURED if case.speedup is None else f"{case.speedup:.2f}x",
            _value(case, "s", "export_s"), _value(case, "s", "build_s"), _value(case, "B", "size_bytes"),
            NOT_MEASURED if case.get("size_reduction") is None else f"{case.get('size_reduction'):.2f}x",
            _value(case, "%", "top1"), NOT_MEASURED if drop is None else f"{drop:.2f}",
            _drop_split(case),
            NOT_MEASURED if cpu is None else f"{cpu:.0f}%", NOT_MEASURED if rss is None else format_value(rss, "B"),
            _value(case, "J", "energy_j_per_inference"),
        ])
        classes.append(case.status if case.status in ("skipped", "failed") else "")
    return Table(HEADLINE, rows, classes)


def resource_blocks(run: RunView, figure, figures, prefix: str) -> List[Block]:
    cases, footer = run.cases, run.footer()
    blocks: List[Block] = []
    if not any(case.resources() for case in cases):
        return [Text("Resource use: not measured (the run had no telemetry: --ptq-no-telemetry or an older"
                     " ptqcore).", note=True)]
    blocks += figure(figures.resources, prefix + "resources", "Resource use per phase (bars per phase; whiskers"
                     " to the peak).", footer, cases)
    notes = []
    for key, what in (("gpu_load_percent_mean", "GPU load"), ("power_w_mean", "power")):
        if not phase_measured(cases, key):
            reasons = unavailable_reasons(cases, key.rsplit("_", 1)[0]) or unavailable_reasons(cases, "energy_j")
            notes.append(f"{what}: not measured" + (f" ({reasons[0]})" if reasons else ""))
    if not measured(cases, "energy_j_per_inference"):
        notes.append("energy per inference: not measured (no power source on this machine)")
    if notes:
        blocks.append(Text("; ".join(notes) + ".", note=True))
    with_samples = [case for case in cases if figures.has_samples(case)]
    for index, case in enumerate(with_samples, start=1):
        blocks += figure(figures.over_time, f"{prefix}time-{index}", f"Resource use over time: {case.label}"
                         " (raw samples, phases laid end to end).", footer, case)
    if not with_samples:
        blocks.append(Text("Resource use over time: not drawn (no raw samples: run with"
                           " --ptq-telemetry-samples).", note=True))
    return blocks


def comparison_blocks(runs: Sequence[RunView], figure, figures) -> List[Block]:
    """Side-by-side bars of the cases of the first run, and compare's verdicts against it."""
    baseline = runs[0]
    names = [run.name for run in runs]
    by_key = [{case.key: case for case in run.cases} for run in runs]
    rows = [(case.label, [found.get(case.key) for found in by_key]) for case in baseline.cases]
    footer = " || ".join(run.footer() for run in runs)
    blocks: List[Block] = [Heading(f"Runs compared (baseline: {baseline.name})")]
    blocks += figure(figures.side_by_side, "runs-side-by-side", "Latency p50 and top-1 per case, one bar per run.",
                     footer, rows, names)
    for run in runs[1:]:
        blocks.append(Heading(f"{run.name} against {baseline.name}", 3))
        try:
            comparison = compare_runs(baseline.run, run.run)
        except CompareError as error:
            blocks.append(Text(f"Not compared: {error}", note=True))
            continue
        blocks.append(Text(verdict_line(comparison)))
        for title, items in case_lists(comparison):
            blocks.append(Items([f"{title}: {name}" + (f": {detail}" if detail else "") for name, detail in items]))
        blocks.append(Table(COLUMNS, [row_cells(row, TEXT_VERDICTS) for row in comparison.rows],
                            ["regression" if row.verdict == "regression" else "" for row in comparison.rows]))
    return blocks

"""``ptqcore report``: figures and tables rendered from small runs made by the suite.

Inputs: ``data/report/tiny.json`` (a trimmed real run of the tiny model with telemetry samples,
its TensorRT cases skipped with their reason; see ``data/report/make_report_inputs.py``) and the
golden comparison files (``planted.json`` has a failed case).
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from ptqcore.cli import main  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "report" / "tiny.json"
BASELINE = DATA / "golden" / "baseline.json"
PLANTED = DATA / "golden" / "planted.json"
SKIP_REASON = "TensorRT is not installed"


def png_size(path: Path):
    """(width, height) from a PNG's IHDR chunk; fails the test when the file is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def render(tmp_path, *runs, extra=()):
    out = tmp_path / "report"
    code = main(["report", *map(str, runs), "-o", str(out), *extra])
    return code, out


def check_files(out: Path):
    html = (out / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(html)
    assert parser.links, "the page references no figure"
    for link in parser.links:
        assert not re.match(r"[a-z]+:", link) and not link.startswith("/"), f"non-local reference {link}"
        assert (out / link).is_file(), f"{link} does not exist"
    figures = sorted((out / "figures").glob("*.png"))
    assert {f"figures/{f.name}" for f in figures} == {link for link in parser.links if link.endswith(".png")}
    for figure in figures:
        width, height = png_size(figure)
        assert width > 200 and height > 150 and figure.stat().st_size > 2048, figure
    assert "<link" not in html and "<script" not in html and "http" not in html  # works offline
    return html, (out / "report.md").read_text(encoding="utf-8"), figures


def test_a_run_with_telemetry_and_skipped_cases(tmp_path, capsys):
    code, out = render(tmp_path, TINY, extra=["--markdown"])
    assert code == 0
    html, markdown, figures = check_files(out)
    assert capsys.readouterr().out == markdown
    names = {f.name for f in figures}
    assert {"run1-latency.png", "run1-throughput.png", "run1-overhead.png", "run1-size.png", "run1-accuracy.png",
            "run1-tradeoff.png", "run1-resources.png"} <= names
    assert any(name.startswith("run1-time-") for name in names)  # raw samples -> over time
    for text in (html, markdown):
        assert f"skipped: {SKIP_REASON}" in text
        assert text.count("tiny_cnn int8 tensorrt") >= 1
        # no power on this machine: said, not drawn as 0
        assert "energy per inference: not measured" in text and "power: not measured" in text
    # Markdown has the headline table, one row per case
    assert "| case | status | p50 ms |" in markdown
    assert len(re.findall(r"^\| tiny_cnn ", markdown, re.M)) == 7
    # a skipped case's figures are "–", never 0
    skipped_row = next(line for line in markdown.splitlines() if line.startswith("| tiny_cnn fp32 tensorrt"))
    assert " 0 " not in skipped_row and "0.0" not in skipped_row and skipped_row.count("–") == 16


def test_a_failed_case_and_a_run_without_telemetry(tmp_path):
    code, out = render(tmp_path, PLANTED)
    assert code == 0
    html, markdown, _ = check_files(out)
    for text in (html, markdown):
        assert "failed: " in text
        assert "Resource use: not measured" in text
    assert 'class=failed' in html


def test_two_runs_side_by_side_with_verdicts(tmp_path):
    code, out = render(tmp_path, BASELINE, PLANTED)
    assert code == 0
    html, markdown, figures = check_files(out)
    assert "runs-side-by-side.png" in {f.name for f in figures}
    assert "REGRESSED" in markdown and "REGRESSION" in markdown and "newly failing" in markdown
    assert "| case | metric | baseline | candidate | change | verdict | note |" in markdown
    assert "class=regression" in html


@pytest.mark.parametrize("bad", ["/nonexistent.json", "not-json", "not-ptqcore"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, bad):
    path = Path(bad)
    if bad == "not-json":
        path = tmp_path / "x.json"
        path.write_text("hello")
    elif bad == "not-ptqcore":
        path = tmp_path / "y.json"
        path.write_text('{"benchmarks": []}')
    code, out = render(tmp_path, path)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("ptqcore report: error:")
    assert not (out / "index.html").exists()


def test_import_and_compare_stay_free_of_matplotlib():
    code = "import sys, ptqcore, ptqcore.cli, ptqcore.results.report; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_markdown_escapes_html_in_names_from_the_runs():
    """GitHub renders inline HTML in job summaries; a model named by a user file must stay text."""
    from ptqcore.results.report.page import Heading, Items, Table, Text, render_markdown

    name = "<img src=x onerror=alert(1)>"
    text = render_markdown("t", [Heading(name, 2), Text(name), Items([name]), Table(("case",), [[name + "|x"]])])
    assert "<img" not in text
    assert text.count("&lt;img src=x onerror=alert(1)&gt;") == 4 and "\\|x" in text


def sweep_run(tmp_path) -> Path:
    """tiny.json made a calibration sweep: its ONNX Runtime INT8 record copied per method x size with
    drops set per copy (the report only reads them), the TensorRT INT8 case still skipped."""
    import copy
    import json

    document = json.loads(TINY.read_text())
    records = document["ptqcore"]["records"]
    (int8,) = [r for r in records if r["precision"] == "int8" and r["backend"] == "onnxruntime"]
    records.remove(int8)
    drops = {("minmax", 32): 3.5, ("minmax", 128): 1.25, ("entropy", 32): -0.5, ("entropy", 128): 0.75}
    for (method, size), drop in drops.items():
        record = copy.deepcopy(int8)
        suffix = ("" if method == "entropy" else f"-{method}") + ("" if size == 128 else f"-cal{size}")
        record.update(case=int8["case"] + suffix, calibration=method, calibration_size=size, accuracy_drop_pp=drop)
        records.append(record)
    failed = copy.deepcopy(int8)
    failed.update(case=int8["case"] + "-percentile", calibration="percentile", calibration_size=128, status="failed",
                  problems=["test_accuracy_drop (call): planted"], accuracy_drop_pp=None)
    records.append(failed)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(document))
    return path


def test_a_calibration_sweep_gets_its_figure_and_table(tmp_path):
    code, out = render(tmp_path, sweep_run(tmp_path))
    assert code == 0
    _, markdown, figures = check_files(out)
    assert "run1-calibration.png" in {f.name for f in figures}
    assert "| model | calibration | drop pp, 32 images | drop pp, 128 images |" in markdown
    rows = {line.split(" | ")[1]: line for line in markdown.splitlines() if line.startswith("| tiny_cnn onnxruntime")}
    assert rows["minmax"].endswith("| 3.50 | 1.25 |") and rows["entropy"].endswith("| -0.50 | 0.75 |")
    assert rows["percentile"].endswith("| – | failed |")  # not in the run at 32; failed at 128: never 0
    assert "| tiny_cnn tensorrt cuda | minmax | – | skipped |" in markdown
    # labels name the size only among INT8 cases, as case ids do
    assert "tiny_cnn int8 onnxruntime cpu minmax cal32" in markdown and "cal128" in markdown


def test_a_run_with_one_method_and_one_size_has_no_sweep_figure(tmp_path):
    code, out = render(tmp_path, TINY)
    assert code == 0
    _, markdown, figures = check_files(out)
    assert not any(f.name.endswith("calibration.png") for f in figures)
    assert "drop pp, 128 images" not in markdown and "cal128" not in markdown


def test_runs_written_before_sizes_were_swept_get_their_single_size(tmp_path):
    """An old record has no calibration_size: its INT8 cases used the run's one option value."""
    from ptqcore.results.compare import load_run

    run = load_run(TINY)
    sizes = {key[-1] for key in run.cases}
    assert sizes == {128, None}
    assert all((key[-1] == 128) == (key[1] == "int8") for key in run.cases)


def test_ranked_layers_and_the_int8_mixed_trade_off_get_a_figure_and_a_table(tmp_path):
    """tiny.json's INT8 record given a ranking, and an int8-mixed copy that kept its top layer in float."""
    import copy
    import json

    document = json.loads(TINY.read_text())
    records = document["ptqcore"]["records"]
    (int8,) = [r for r in records if r["precision"] == "int8" and r["backend"] == "onnxruntime"]
    int8["sensitivity"] = [{"node": f"/{i}/Conv", "op": "Conv", "added_nsr": 0.5 / (i + 1), "sqnr_in_db": None,
                            "sqnr_out_db": 3.0, "macs": 1000} for i in range(12)]
    int8["accuracy_drop_pp"] = 4.25
    mixed = copy.deepcopy(int8)
    del mixed["sensitivity"]
    mixed.update(case=int8["case"].replace("-int8-", "-int8-mixed-"), precision="int8-mixed", accuracy_drop_pp=1.5,
                 float_layers=["/0/Conv"], float_macs_share=0.125, mixed_note="1 of 12 ranked layers in float")
    records.append(mixed)
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(document))
    code, out = render(tmp_path, path)
    assert code == 0
    _, markdown, figures = check_files(out)
    assert "run1-sensitivity.png" in {f.name for f in figures}
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {mixed['case']} |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:6] == ["4.25", "1.50", "1", "12.5%"]
    assert cells[-1] == "1 of 12 ranked layers in float"


def test_layer_profiles_get_their_figures_and_a_table_that_names_the_causes(tmp_path):
    """tiny.json's FP32 and INT8 records given profiles made by the functions that make them in a run."""
    import json

    from ptqcore.measure.layer_profile import LayerProfile, LayerTime, summary
    from ptqcore.study.layer_compare import layer_changes, slowdown_causes

    def profile(layers):
        times = [LayerTime(name, op, "int8" if op.startswith("Q") else "fp32", category, group, neighbour, "cpu", (ms,) * 3)
                 for name, op, category, group, neighbour, ms in layers]
        return LayerProfile(tuple(times), (sum(t.median_ms for t in times),) * 3, 3, "onnxruntime")

    fp32 = profile([("c1", "Conv", "compute", "c1", "", 0.30), ("cat", "Concat", "compute", "cat", "", 0.05)])
    int8 = profile([("c1", "QLinearConv", "compute", "c1", "", 0.20), ("cat", "QLinearConcat", "compute", "cat", "", 0.10),
                    ("dq", "DequantizeLinear", "qdq", "bn", "BatchNormalization", 0.08),
                    ("bn", "BatchNormalization", "float", "cat", "", 0.06), ("t", "Transpose", "reformat", "", "", 0.02)])
    document = json.loads(TINY.read_text())
    records = document["ptqcore"]["records"]
    by_precision = {r["precision"]: r for r in records if r["backend"] == "onnxruntime"}
    by_precision["fp32"]["layer_profile"] = summary(fp32, 0.36, "run.layers/fp32.csv")
    by_precision["int8"]["layer_profile"] = summary(int8, 0.40, "run.layers/int8.csv")
    by_precision["int8"]["layer_changes"] = layer_changes(fp32, int8, by_precision["fp32"]["case"])
    by_precision["int8"]["int8_slowdown"] = slowdown_causes(fp32, int8, 0.9, "FP32")
    path = tmp_path / "profiled.json"
    path.write_text(json.dumps(document))
    code, out = render(tmp_path, path)
    assert code == 0
    _, markdown, figures = check_files(out)
    assert {"run1-layer-time.png", "run1-layer-changes.png"} <= {f.name for f in figures}
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {by_precision['int8']['case']} |")
              and "vs FP32" in line]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "0.460" and cells[3:7] == ["65%", "13%", "17%", "4%"] and cells[7] == "0.90x vs FP32"
    assert "left in float: BatchNormalization (1)" in cells[8] and "around BatchNormalization (1)" in cells[8]

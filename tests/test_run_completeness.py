"""A run file says what it is, and the gate refuses one that measured less than it claims.

End to end with real runs of the suite on the tiny model (a subprocess each): one run that is
stopped with a real SIGINT while ``test_latency`` runs, and one complete run (the session fixture
``complete_run`` of ``tests/conftest.py``, which ``tests/test_runfile_fuzz.py`` mutates). Then ``ptqcore compare`` (in-process, through its
``main``) on what they wrote.
"""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import suite_command

from ptqcore.cli import main


def compare(capsys, *args):
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_complete_run_says_so_and_compares_clean(complete_run, capsys):
    out, _ = complete_run
    session = json.loads(out.read_text())["ptqcore"]["session"]
    assert session["complete"] and session["exit_status"] == 0 and not session["interrupted"]
    assert session["tests_selected"] == session["tests_finished"] > 0
    code, text, err = compare(capsys, out, out)
    assert code == 0 and err == "" and "OK: no regression" in text


def test_a_run_interrupted_by_sigint_during_latency_cannot_pass_the_gate(complete_run, tiny_cli_options, tmp_path,
                                                                        capsys):
    baseline, cache = complete_run  # warm: the interrupted run reaches test_latency in seconds
    out = tmp_path / "interrupted.json"
    process = subprocess.Popen(suite_command(tmp_path, cache, tiny_cli_options, out) + ["-v"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "test_latency[" in line:  # -v prints the test's id as it starts
                time.sleep(0.3)
                process.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail("test_latency never started: " + "".join(seen[-30:]))
        rest = process.communicate(timeout=300)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, rest[-2000:]  # pytest's exit status for an interrupted session
    document = json.loads(out.read_text())
    session = document["ptqcore"]["session"]
    assert session["interrupted"] and not session["complete"]
    assert session["tests_finished"] < session["tests_selected"]
    records = document["ptqcore"]["records"]
    assert not any(r["status"] == "passed" and r["tests_not_finished"] for r in records)
    incomplete = [r for r in records if r["status"] == "incomplete"]
    assert incomplete and all("test_latency" in r["tests_not_finished"] for r in incomplete)

    code, text, err = compare(capsys, baseline, out)
    assert code == 2 and text == ""
    assert err.count("\n") == 1 and "is an incomplete run (interrupted" in err and "--allow-incomplete" in err
    code, text, err = compare(capsys, baseline, out, "--allow-incomplete")
    assert code in (0, 1) and "incomplete run accepted (--allow-incomplete): interrupted" in text
    assert any(f"{r['case']} (incomplete)" in text for r in incomplete)


def test_a_record_that_lost_a_figure_its_benchmark_entry_still_has_is_refused(complete_run, tmp_path, capsys):
    out, _ = complete_run
    document = json.loads(out.read_text())
    for record in document["ptqcore"]["records"]:
        record.pop("top1", None)
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(document))
    code, text, err = compare(capsys, out, damaged)
    assert code == 2 and err.count("\n") == 1 and "has top1 but the case's record lacks it" in err

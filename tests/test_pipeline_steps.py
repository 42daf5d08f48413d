"""The pipeline's composition: one sequence of steps for cached builds and timed rounds.

The backend here is a stand-in for our own :class:`~ptqcore.backends.base.Backend` contract (no
third-party API is imitated): it records what phase 2 asked it to build from.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from ptqcore import pipeline
from ptqcore.backends.base import Backend
from ptqcore.build.quantize import QuantRecipe
from ptqcore.case import Case, Precision
from ptqcore.pipeline import Calibration, Output, Steps, phase_two
from ptqcore.store import ArtifactStore

CASE = Case("m", Precision.INT8, "stand-in", "cpu", 1, "entropy")


class RecordingBackend(Backend):
    name = "stand-in"
    precisions = ("fp32", "int8")
    artifact_suffix = ".onnx"  # as ONNX Runtime's: the artifact is model.onnx, like phase 1's output

    def __init__(self, needs_ranges: bool) -> None:
        self.needs_ranges = needs_ranges
        self.built = []

    device = "cpu"

    def int8_needs_ranges(self, case: Case) -> bool:
        return self.needs_ranges

    def versions(self) -> dict:
        return {"stand-in": "1"}

    def build(self, case: Case, onnx_path: Path, out_path: Path, int8) -> Path:
        self.built.append((Path(onnx_path).name, None if int8 is None else int8.prepared_onnx is not None))
        shutil.copyfile(onnx_path, out_path)  # as ONNX Runtime's FP32 build: fails if both are one file
        return Path(out_path)

    def runner(self, case, artifact):
        raise NotImplementedError


@pytest.fixture
def fake_int8_steps(monkeypatch):
    """The three INT8 steps as file writers that count their calls (their real work is tested elsewhere)."""
    calls = []

    def writer(name):
        def write(*args):
            calls.append(name)
            out = Path(args[2] if name in ("statistics", "ranges") else args[-1])
            out.write_text(name)
            return out
        return write

    monkeypatch.setattr(pipeline, "prepared_onnx_from_onnx", writer("prepared"))
    monkeypatch.setattr(pipeline, "statistics_from_onnx", writer("statistics"))
    monkeypatch.setattr(pipeline, "ranges_from_statistics_file", writer("ranges"))
    monkeypatch.setattr(pipeline, "graph_outputs", lambda path: ("logits",))  # "prepared" is no ONNX file here
    # the stand-ins' files are not what their names say; reading entries back is tested in
    # tests/test_robustness_store.py
    monkeypatch.setattr(pipeline, "readable", lambda path: None)
    return calls


def calibration() -> Calibration:
    return Calibration(np.zeros((4, 3, 8, 8), np.float32), "images-v1", QuantRecipe("entropy"), 1, "4 images")


def source_in(steps: Steps) -> Output:
    """Phase 1's output, made by the same steps (a stand-in export writing model.onnx)."""
    return steps.run("onnx", lambda: {"k": 1}, "model.onnx", lambda p: p.write_bytes(b"onnx"), "onnx", memo=None)


@pytest.mark.parametrize("needs_ranges", [True, False])
def test_cached_and_timed_builds_run_the_same_steps(tmp_path, fake_int8_steps, needs_ranges):
    """Same steps, same order, same backend calls; and in a round no step overwrites another's file
    (an ONNX Runtime FP32 artifact is named model.onnx like phase 1's output)."""
    backend = RecordingBackend(needs_ranges)
    store = ArtifactStore(tmp_path / "cache")
    cached, seconds = phase_two(Steps(store), backend, CASE, source_in(Steps(store)), calibration(), "1.0", None)
    cached_calls = list(fake_int8_steps)
    fake_int8_steps.clear()
    scratch = tmp_path / "round"
    scratch.mkdir()
    steps = Steps(scratch=scratch)
    timed, timed_seconds = phase_two(steps, backend, CASE, source_in(steps), calibration(), "1.0", None)
    assert cached_calls == list(fake_int8_steps) == (["prepared", "statistics", "ranges"] if needs_ranges else [])
    assert backend.built == [("model.onnx", needs_ranges)] * 2
    assert cached.entry is not None and timed.entry is None and timed.path.parent.parent == scratch
    assert seconds is not None and timed_seconds is not None


def test_a_cached_step_is_reused_and_a_timed_step_never_looks_anything_up(tmp_path, fake_int8_steps):
    store = ArtifactStore(tmp_path / "cache")
    backend = RecordingBackend(True)
    first, _ = phase_two(Steps(store), backend, CASE, source_in(Steps(store)), calibration(), "1.0", None)
    again, _ = phase_two(Steps(store), backend, CASE, source_in(Steps(store)), calibration(), "1.0", None)
    assert again.entry.reused and again.entry.sha256 == first.entry.sha256 and len(backend.built) == 1
    scratch = tmp_path / "round"
    scratch.mkdir()

    def never():
        raise AssertionError("a timed step computed its cache key")

    out = Steps(scratch=scratch).run("onnx", never, "x.onnx", lambda p: p.write_text("x"), "x", memo=("x",))
    assert out.path == scratch / "onnx" / "x.onnx" and out.entry is None
    with pytest.raises(ValueError, match="not hashed"):
        out.sha256


def test_steps_need_exactly_one_destination(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        Steps()
    with pytest.raises(ValueError, match="not both"):
        Steps(ArtifactStore(tmp_path), scratch=tmp_path)


def test_an_int8_build_without_calibration_images_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs its calibration images"):
        phase_two(Steps(scratch=tmp_path), RecordingBackend(True), CASE, Output(tmp_path / "m.onnx"), None, "1", None)

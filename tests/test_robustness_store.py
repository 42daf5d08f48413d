"""Issue #10 (store): no manifest is trusted blindly, a bad load rebuilds once, one builder per entry."""

import json
import multiprocessing
import threading
import time

import pytest

from ptqcore.store import ArtifactStore, entry_for_file, file_sha256


class Builder:
    def __init__(self, payload=b"artifact", seconds=0.0):
        self.calls = 0
        self.payload = payload
        self.seconds = seconds

    def __call__(self, path):
        self.calls += 1
        time.sleep(self.seconds)
        path.write_bytes(self.payload)


def manifest_of(entry):
    return entry.path.parent / "manifest.json"


@pytest.mark.parametrize("text", ["[]", "null", "3", '"x"', '{"kind": "artifact"}', "[" * 100000])
def test_manifest_that_is_not_an_entry_object_is_rebuilt(tmp_path, text):
    messages = []
    store = ArtifactStore(tmp_path, messages.append)
    build = Builder()
    entry = store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    manifest_of(entry).write_text(text)
    again = store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    assert build.calls == 2 and not again.reused
    assert any("corrupted" in m and "rebuilding" in m for m in messages)
    assert json.loads(manifest_of(again).read_text())["key"] == again.key


def test_entry_copied_into_another_key_folder_is_not_reused(tmp_path):
    """An FP16 entry copied over the INT8 key's folder verifies its own file but names another key."""
    messages = []
    store = ArtifactStore(tmp_path, messages.append)
    fp16 = store.get_or_build("artifact", {"precision": "fp16"}, "model.onnx", Builder(b"fp16"))
    int8_build = Builder(b"int8")
    int8 = store.get_or_build("artifact", {"precision": "int8"}, "model.onnx", int8_build)
    for name in ("model.onnx", "manifest.json"):
        (int8.path.parent / name).write_bytes((fp16.path.parent / name).read_bytes())
    again = store.get_or_build("artifact", {"precision": "int8"}, "model.onnx", int8_build)
    assert int8_build.calls == 2 and again.path.read_bytes() == b"int8"
    assert any(f"manifest key is '{fp16.key}'" in m for m in messages)


@pytest.mark.parametrize("field,value", [("kind", "onnx"), ("file", "other.onnx"), ("size_bytes", "8"),
                                         ("sha256", None)])
def test_manifest_fields_are_checked(tmp_path, field, value):
    store = ArtifactStore(tmp_path)
    build = Builder()
    entry = store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    manifest = json.loads(manifest_of(entry).read_text())
    manifest[field] = value
    manifest_of(entry).write_text(json.dumps(manifest))
    store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    assert build.calls == 2


def test_manifest_is_written_with_sorted_keys(tmp_path):
    entry = ArtifactStore(tmp_path).get_or_build("artifact", {"b": 1, "a": 2}, "model.onnx", Builder())
    manifest = json.loads(manifest_of(entry).read_text())
    assert list(manifest) == sorted(manifest) and list(manifest["inputs"]) == ["a", "b"]


def test_entry_that_verifies_but_does_not_load_is_rebuilt_once(tmp_path):
    messages = []
    store = ArtifactStore(tmp_path, messages.append)
    build = Builder(b"good")
    store.get_or_build("base", {"k": 1}, "model.pt", build)
    loads = []

    def load(path):
        loads.append(path.read_bytes())
        if len(loads) == 1:
            raise RuntimeError("written by an older torch\nsecond line")
        return "module"

    entry, value = ArtifactStore(tmp_path, messages.append).load_or_build("base", {"k": 1}, "model.pt", build, load)
    assert value == "module" and build.calls == 2 and not entry.reused and len(loads) == 2
    assert any("verified but did not load: RuntimeError: written by an older torch second line" in m for m in messages)


def test_fresh_entry_that_does_not_load_raises_without_a_loop(tmp_path):
    build = Builder()

    def load(path):
        raise ValueError("never loads")

    with pytest.raises(ValueError, match="never loads"):
        ArtifactStore(tmp_path).load_or_build("base", {"k": 1}, "model.pt", build, load)
    assert build.calls == 1
    with pytest.raises(ValueError, match="never loads"):  # reused, discarded, rebuilt once, still bad
        ArtifactStore(tmp_path).load_or_build("base", {"k": 1}, "model.pt", build, load)
    assert build.calls == 2


def test_discard_removes_the_entry_and_refuses_user_files(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    build = Builder()
    entry = store.get_or_build("onnx", {"k": 1}, "model.onnx", build)
    store.discard(entry, "test")
    assert not entry.path.parent.exists()
    assert not store.get_or_build("onnx", {"k": 1}, "model.onnx", build).reused
    user = tmp_path / "net.onnx"
    user.write_bytes(b"user model")
    with pytest.raises(ValueError, match="not an entry"):
        store.discard(entry_for_file(user))
    assert user.exists()


def test_user_file_is_keyed_by_its_bytes(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert entry_for_file(a).key == entry_for_file(b).key == file_sha256(a)[:20]
    b.write_bytes(b"sam3")
    assert entry_for_file(a).key != entry_for_file(b).key


def test_two_threads_build_an_entry_once(tmp_path):
    messages = []
    build = Builder(seconds=0.5)
    results = []

    def worker():
        store = ArtifactStore(tmp_path, messages.append)
        results.append(store.get_or_build("artifact", {"k": 1}, "m.onnx", build, "A"))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert build.calls == 1
    assert sorted(entry.reused for entry in results) == [False, True]
    assert any(m.startswith("reused cached A (built by another run)") for m in messages)


def _build_in_process(root, counter, queue):
    def build(path):
        with open(counter, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)
        path.write_bytes(b"artifact")

    messages = []
    entry = ArtifactStore(root, messages.append).get_or_build("artifact", {"k": 2}, "m.onnx", build, "B")
    queue.put((entry.reused, messages))


def test_two_processes_build_an_entry_once(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    counter = tmp_path / "builds.txt"
    workers = [context.Process(target=_build_in_process, args=(tmp_path / "cache", counter, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert counter.read_text() == "built\n"
    assert sorted(reused for reused, _ in outcomes) == [False, True]
    waiter = next(messages for reused, messages in outcomes if reused)
    assert "(built by another run)" in waiter[0]


#: One suite run of the end-to-end test below: the tiny model on digits, trained for one epoch on
#: 8x8 inputs (cheap: the point is who trains, not how well). It loads its data, says it is ready,
#: waits for the go file, then asks for the base model.
SUITE_RUN = """
import sys, time
from pathlib import Path
from ptqcore.options.suite_options import SuiteOptions
from ptqcore.study.session import Study
cache, ready, go = map(Path, sys.argv[1:4])
suite = Study(SuiteOptions(models=("tiny",), cache_dir=cache, telemetry=False, train_epochs=1, image_size=8,
                           eval_size=20), report=print)
suite.dataset("tiny_cnn")
ready.touch()
deadline = time.monotonic() + 300
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
print("sha256", suite.base_model("tiny_cnn").file.sha256, flush=True)
"""


def test_two_suite_runs_started_together_on_one_empty_cache_train_the_base_once(tmp_path):
    import os
    import subprocess
    import sys

    cache, go = tmp_path / "cache", tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core each: two runs on two cores, no spinning threads
    runs = [subprocess.Popen([sys.executable, "-c", SUITE_RUN, str(cache), str(ready), str(go)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for ready in readies]
    try:
        deadline = time.monotonic() + 300
        while not all(ready.exists() for ready in readies):
            assert time.monotonic() < deadline and all(run.poll() is None for run in runs), "a run did not get ready"
            time.sleep(0.05)
        go.touch()  # both ask for the base model now
        outputs = [run.communicate(timeout=300)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    assert [run.returncode for run in runs] == [0, 0], outputs
    built = [out for out in outputs if "built base model tiny_cnn" in out]
    waited = [out for out in outputs if "reused cached base model tiny_cnn (train on digits) (built by another run)" in out]
    assert len(built) == 1 and len(waited) == 1 and built != waited, outputs
    assert sum(out.count("training tiny_cnn: epoch") for out in outputs) == 1
    hashes = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("sha256 ")}
    assert len(hashes) == 1 and len(list((cache / "base").glob("*/model.pt"))) == 1


# -- every cached step reads its entry back: one that verifies but does not load is built again ------
def _replant(path, payload: bytes) -> None:
    """Replace the entry's file with ``payload`` and make its manifest verify (size and SHA-256),
    as a changed library version writing the same key would."""
    import hashlib

    path.write_bytes(payload)
    manifest = path.parent / "manifest.json"
    document = json.loads(manifest.read_text())
    document.update(size_bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    manifest.write_text(json.dumps(document, sort_keys=True))


@pytest.mark.parametrize("step, payload", [
    ("statistics", "npz of other arrays"),
    ("calibration", b'{"CLS": "TensorsData", "data": {}}'),
    ("prepared", b"not an ONNX model"),
    ("artifact", b"\x08\x07garbage"),
])
def test_an_int8_step_entry_that_verifies_but_does_not_load_is_rebuilt_with_one_line(tiny_cache, tiny_settings, step,
                                                                                     payload):
    import io

    import numpy as np

    from ptqcore.case import Case, Precision
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    case = Case("tiny_cnn", Precision.INT8, "onnxruntime", "cpu", 1, "entropy")
    options = SuiteOptions(models=("tiny",), cache_dir=tiny_cache, telemetry=False, **tiny_settings)
    first = Study(options)
    first.artifact(case)
    names = {"statistics": "statistics.npz", "calibration": "ranges.json", "prepared": "prepared.onnx",
             "artifact": "model.onnx"}
    (planted,) = (tiny_cache / step).glob(f"*/{names[step]}")
    if payload == "npz of other arrays":
        buffer = io.BytesIO()
        np.savez(buffer, names=np.array(["x"]), other=np.zeros(3))
        payload = buffer.getvalue()
    _replant(planted, payload)
    messages = []
    again = Study(options, report=messages.append)
    top1 = again.quality(case)["top1"]  # reads every step back: no KeyError, no DecodeError
    assert 0.5 < top1 <= 1.0
    discarded = [m for m in messages if m.startswith("discarding cache entry") and "verified but did not load" in m]
    assert len(discarded) == 1 and f"/{step}/" in discarded[0] and "\n" not in discarded[0], messages

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

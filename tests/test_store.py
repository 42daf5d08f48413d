"""The artifact store: content keys, reuse, corruption detection and atomic builds."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.store import ArtifactStore, stable_key

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_key_ignores_dict_order(inputs):
    assert stable_key(inputs) == stable_key(dict(reversed(list(inputs.items()))))


@given(st.dictionaries(st.text(max_size=6), st.integers(), min_size=1, max_size=6), st.data())
def test_key_changes_when_any_input_changes(inputs, data):
    name = data.draw(st.sampled_from(sorted(inputs)))
    changed = dict(inputs, **{name: inputs[name] + 1})
    assert stable_key(inputs) != stable_key(changed)


def entries(folder):
    """What a kind's folder holds besides the build locks (which stay, empty, by design)."""
    return [p for p in folder.iterdir() if p.suffix != ".lock"]


class Builder:
    def __init__(self, payload=b"artifact"):
        self.calls = 0
        self.payload = payload

    def __call__(self, path):
        self.calls += 1
        path.write_bytes(self.payload)


def test_builds_once_then_reuses_and_says_so(tmp_path):
    messages = []
    store = ArtifactStore(tmp_path, messages.append)
    build = Builder()
    first = store.get_or_build("onnx", {"model": "m"}, "model.onnx", build, "ONNX of m")
    second = ArtifactStore(tmp_path, messages.append).get_or_build("onnx", {"model": "m"}, "model.onnx", build, "ONNX of m")
    assert build.calls == 1
    assert (first.reused, second.reused) == (False, True)
    assert first.path == second.path and first.path.read_bytes() == b"artifact"
    assert messages[0].startswith("built ONNX of m") and messages[1].startswith("reused cached ONNX of m")
    manifest = json.loads((first.path.parent / "manifest.json").read_text())
    assert manifest["sha256"] == first.sha256 and manifest["inputs"] == {"model": "m"}


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_manifest", "garble_manifest"])
def test_corrupted_entry_is_detected_and_rebuilt(tmp_path, damage):
    messages = []
    store = ArtifactStore(tmp_path, messages.append)
    build = Builder()
    entry = store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    if damage == "truncate":
        entry.path.write_bytes(b"art")
    elif damage == "flip":
        entry.path.write_bytes(b"ARTIFACT")
    elif damage == "drop_manifest":
        (entry.path.parent / "manifest.json").unlink()
    else:
        (entry.path.parent / "manifest.json").write_text("{not json")
    again = store.get_or_build("artifact", {"k": 1}, "model.onnx", build)
    assert build.calls == 2
    assert not again.reused and again.path.read_bytes() == b"artifact"
    assert any("corrupted" in m for m in messages)


@pytest.mark.parametrize("error", [RuntimeError("export failed"), KeyboardInterrupt()])
def test_failed_or_interrupted_build_leaves_nothing(tmp_path, error):
    store = ArtifactStore(tmp_path)

    def build(path):
        path.write_bytes(b"half")
        raise error

    with pytest.raises(type(error)):
        store.get_or_build("artifact", {"k": 2}, "model.onnx", build)
    assert entries(tmp_path / "artifact") == []
    good = store.get_or_build("artifact", {"k": 2}, "model.onnx", Builder())
    assert not good.reused and good.path.read_bytes() == b"artifact"


def test_build_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="without writing"):
        ArtifactStore(tmp_path).get_or_build("artifact", {}, "model.onnx", lambda path: None)
    assert entries(tmp_path / "artifact") == []

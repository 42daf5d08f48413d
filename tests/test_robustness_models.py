"""Issue #10 (models): model files never collide with each other or with a registered model."""

import pytest

from ptqcore.errors import UsageError
from ptqcore.models import file_model_names, spec_from_file
from ptqcore.store import file_sha256


def model_file(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_files_with_the_same_stem_get_distinct_names(tmp_path):
    a = model_file(tmp_path / "a" / "net.onnx", b"model a")
    b = model_file(tmp_path / "b" / "net.onnx", b"model b")
    names = file_model_names([str(a), f" {b} "])
    assert names == {str(a): f"net_{file_sha256(a)[:8]}", str(b): f"net_{file_sha256(b)[:8]}"}
    assert len(set(names.values())) == 2


def test_file_named_like_a_registered_model_is_not_put_under_its_name(tmp_path):
    tiny = model_file(tmp_path / "tiny_cnn.onnx", b"user tiny")
    names = file_model_names(["tiny", str(tiny)])
    assert names[str(tiny)] == f"tiny_cnn_{file_sha256(tiny)[:8]}"
    spec = spec_from_file(tiny, 32, name=names[str(tiny)])
    assert spec.name == names[str(tiny)] and spec.source == "onnx"


def test_unique_stems_keep_their_name_and_one_file_twice_is_one_model(tmp_path):
    net = model_file(tmp_path / "my_net.onnx", b"x")
    ts = model_file(tmp_path / "other.pt", b"y")
    assert file_model_names(["tiny", str(net), str(ts), str(net)]) == {str(net): "my_net", str(ts): "other"}


def test_name_changes_with_the_files_bytes(tmp_path):
    a = model_file(tmp_path / "a" / "net.onnx", b"model a")
    b = model_file(tmp_path / "b" / "net.onnx", b"model b")
    before = file_model_names([str(a), str(b)])[str(a)]
    a.write_bytes(b"model A")
    assert file_model_names([str(a), str(b)])[str(a)] != before


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        file_model_names([str(tmp_path / "gone.onnx")])

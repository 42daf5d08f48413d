"""Issue #10 (models): model files never collide with each other or with a registered model."""

import pytest

from ptqcore.errors import UsageError
from ptqcore.models.registry import file_model_names, spec_from_file
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


def test_a_model_whose_outputs_do_not_match_the_classes_stops_before_any_work(tmp_path):
    """A 5-output model on the 10-class digits (and a 1,000-class one would be the same): a usage error
    naming both numbers, not a run of top-1 0.0 that passes with no drop."""
    import torch

    from ptqcore.errors import UsageError
    from ptqcore.options.suite_options import SuiteOptions
    from ptqcore.study.session import Study

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)).eval()
    scripted = tmp_path / "five.pt"
    torch.jit.save(torch.jit.script(net), str(scripted))
    from ptqcore.build.export import onnx_from_torch

    onnx_file = onnx_from_torch(net, tmp_path / "five.onnx", 32, 17, "legacy")
    for path in (scripted, onnx_file):
        suite = Study(SuiteOptions(models=(str(path),), cache_dir=tmp_path / "cache", file_input_size=32))
        with pytest.raises(UsageError, match="predicts 5 classes but data set digits has 10"):
            suite.check_output_widths()

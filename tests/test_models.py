"""The model registry, selections, user model files and ImageNet weight loading."""

from pathlib import Path

import pytest

from ptqcore.errors import ModelLoadError, UsageError
from ptqcore.models.registry import STUDY_MODELS, get_model_spec, list_models, resolve_model_names, spec_from_file
from ptqcore.models.training import TrainRecipe, imagenet_state_dict, make_base_model


def test_registry_has_the_study_models_and_resnets():
    for name in STUDY_MODELS + ("resnet18", "resnet50", "tiny_cnn"):
        assert name in list_models()
    assert list_models("mobilenet*") == ["mobilenet_v3_large", "mobilenet_v3_small"]
    assert list_models("densenet2*") == ["densenet201"]


def test_selections_expand_presets_globs_and_torchvision_names():
    assert resolve_model_names(["study"]) == list(STUDY_MODELS)
    assert resolve_model_names(["quick", "mobilenet*"]) == ["mobilenet_v3_small", "mobilenet_v3_large"]
    assert resolve_model_names(["resnet34"]) == ["resnet34"]  # any torchvision classifier
    assert get_model_spec("resnet34").source == "torchvision"
    assert "tiny_cnn" not in resolve_model_names(["all"])


@pytest.mark.parametrize("selection", [["mobilenetv3"], ["vit*zzz"]])
def test_unknown_models_list_the_valid_names(selection):
    with pytest.raises(UsageError) as info:
        resolve_model_names(selection)
    assert "mobilenet_v3_small" in str(info.value) and "fix:" in str(info.value)


def test_model_file_specs(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        spec_from_file(tmp_path / "missing.onnx", 224)
    with pytest.raises(UsageError, match="unknown suffix"):
        spec_from_file(tmp_path / "model.h5", 224)
    (tmp_path / "net.onnx").write_bytes(b"x")
    spec = spec_from_file(tmp_path / "net.onnx", 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert (spec.name, spec.source, spec.preprocess.size) == ("net", "onnx", 64)
    assert spec.unsupported_reason("torch", "base") is not None
    assert spec.unsupported_reason("onnxruntime", "int8") is None


def test_tiny_model_builds_for_any_class_count():
    import torch

    model = get_model_spec("tiny_cnn").factory(7).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_imagenet_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    """Real torchvision loading code, fed a file placed where torch hub caches downloads."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = get_model_spec("resnet18")
    url = torchvision.models.get_weight(spec.weights).url
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    reference = spec.factory(1000)
    torch.save(reference.state_dict(), cache / Path(url).name)
    state = imagenet_state_dict(spec)
    assert torch.equal(state["fc.weight"], reference.state_dict()["fc.weight"])
    model = make_base_model(spec, 1000, "imagenet", None, [], TrainRecipe(), print)
    assert torch.equal(model.fc.weight, reference.fc.weight)


def test_missing_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    """Offline, torch.hub's download raises URLError (an OSError); this stands in for the download only."""
    import urllib.error

    import torch.hub

    def offline(url, dst, hash_prefix=None, progress=True):  # mirrors torch.hub.download_url_to_file, torch 2.x
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelLoadError) as info:
        imagenet_state_dict(get_model_spec("mobilenet_v3_small"))
    message = str(info.value)
    assert "mobilenet_v3_small-" in message and "--ptq-weights train" in message

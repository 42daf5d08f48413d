"""Issue #10 (finding 7): class folders map to a fixed-width model's outputs, and a model with nothing
to train is evaluated on every image not used for calibration.

The model files here are real (TorchScript and ONNX exported from a small torch module) and score
by colour: red images on one output, blue images on another, every other output far below. So a
right mapping gives top-1 1.0 and a wrong one 0.0, and nothing is trained.
"""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ptqcore.case import BASE_BACKEND, Case, Precision
from ptqcore.errors import UsageError
from ptqcore.models.class_map import folder_outputs, imagenet1k_wnids, load_class_map
from ptqcore.options.suite_options import SuiteOptions
from ptqcore.study.session import Study

pytest_plugins = ["pytester"]

#: ImageNet-1k outputs 285 (Egyptian cat, n02124075) and 967 (espresso, n07920052)
RED, BLUE = 285, 967
SIZE = 16


def colour_model(width=1000, red=RED, blue=BLUE):
    """A classifier of ``width`` outputs: output ``red`` for red images, ``blue`` for blue ones."""
    import torch

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, width))
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.fill_(-10.0)
        net[2].weight[red] = torch.tensor([1.0, 0.0, -1.0])
        net[2].weight[blue] = torch.tensor([-1.0, 0.0, 1.0])
        net[2].bias[red] = net[2].bias[blue] = 0.0
    return net.eval()


def torchscript_file(folder, width=1000, red=RED, blue=BLUE):
    import torch

    path = folder / f"colours{width}.pt"
    torch.jit.save(torch.jit.script(colour_model(width, red, blue)), str(path))
    return path


def onnx_file(folder, width=1000):
    from ptqcore.build.export import onnx_from_torch

    return onnx_from_torch(colour_model(width), folder / f"colours{width}.onnx", SIZE, 17, "legacy")


def colour_tree(root, red_folder, blue_folder, red_images=5, blue_images=4):
    """``red_folder`` of reddish and ``blue_folder`` of bluish 12x12 BMPs (noisy, so no two are equal)."""
    rng = np.random.default_rng(0)
    for folder, count, channel in ((red_folder, red_images, 0), (blue_folder, blue_images, 2)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 60, size=(12, 12, 3), dtype=np.uint8)
            pixels[..., channel] += 180
            Image.fromarray(pixels).save(root / folder / f"{i}.bmp")
    return root


def suite_for(model, root, tmp_path, **options):
    settings = {"models": (str(model),), "dataset": "imagefolder", "data_root": root, "cache_dir": tmp_path / "cache",
                "file_input_size": SIZE, "calibration_sizes": (2,), "telemetry": False, **options}
    messages = []
    suite = Study(SuiteOptions(**settings), report=messages.append)
    return suite, next(iter(suite.specs)), messages


def scored(suite, model, precision=Precision.BASE, backend=BASE_BACKEND):
    suite.check_output_widths()
    return suite.predictions(Case(model, precision, backend, "cpu", 1))


# -- the three ways a folder names an output ---------------------------------------------------------
def test_numeric_folders_are_output_indices(tmp_path):
    root = colour_tree(tmp_path / "data", f"0{RED}", f"0{BLUE}")
    suite, model, messages = suite_for(torchscript_file(tmp_path), root, tmp_path)
    predictions = scored(suite, model)
    assert suite.dataset(model).label_outputs == (RED, BLUE)
    assert set(predictions.labels) == {RED, BLUE}
    assert predictions.top1_accuracy == 1.0  # by sort order (labels 0 and 1) it would be 0.0
    assert any("folder names as output indices" in m for m in messages)


def test_wordnet_folders_map_to_imagenet_order(tmp_path):
    root = colour_tree(tmp_path / "data", "n02124075", "n07920052")
    suite, model, messages = suite_for(onnx_file(tmp_path), root, tmp_path)
    predictions = scored(suite, model, Precision.FP32, "onnxruntime")
    assert suite.dataset(model).label_outputs == (RED, BLUE)
    assert predictions.top1_accuracy == 1.0
    assert any("ImageNet-1k WordNet ids" in m for m in messages)


def test_class_map_file_says_it_and_a_different_map_is_a_different_data_set(tmp_path):
    root = colour_tree(tmp_path / "data", "cat", "dog")
    model_file = torchscript_file(tmp_path)
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    right.write_text(json.dumps({"cat": RED, "dog": BLUE, "bird": 1}))  # folders the data lacks are allowed
    wrong.write_text(json.dumps({"cat": BLUE, "dog": RED}))
    good, model, _ = suite_for(model_file, root, tmp_path, class_map=right)
    bad, _, _ = suite_for(model_file, root, tmp_path, class_map=wrong)
    assert scored(good, model).top1_accuracy == 1.0
    assert scored(bad, model).top1_accuracy == 0.0
    assert good.dataset(model).fingerprint != bad.dataset(model).fingerprint


def test_as_many_outputs_as_folders_keeps_the_sorted_order(tmp_path):
    root = colour_tree(tmp_path / "data", "a_red", "b_blue")
    suite, model, _ = suite_for(torchscript_file(tmp_path, 2, red=0, blue=1), root, tmp_path)
    assert scored(suite, model).top1_accuracy == 1.0 and suite.dataset(model).label_outputs is None


def test_a_class_map_on_a_data_set_without_class_folders_is_a_usage_error(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('{"cat": 1}')
    suite, _, _ = suite_for(torchscript_file(tmp_path, 10, red=1, blue=2), None, tmp_path, dataset="digits",
                            class_map=path)
    with pytest.raises(UsageError, match="--ptq-class-map maps class folders but data set digits has none"):
        suite.check_output_widths()


def test_imagenet_weights_use_the_same_mapping_and_split_without_loading_weights(tmp_path):
    root = colour_tree(tmp_path / "data", f"{RED}", f"{BLUE}")
    suite, _, _ = suite_for("mobilenet_v3_small", root, tmp_path, weights="imagenet", calibration_sizes=(3,))
    data = suite.dataset("mobilenet_v3_small")
    assert data.label_outputs == (RED, BLUE)
    assert sorted(data.calibration_subset(3) + data.evaluation) == list(range(9))


# -- no rule applies, or the map is wrong: one line before any work -----------------------------------
def test_width_mismatch_without_a_mapping_stops_collection_with_one_line(pytester, tmp_path):
    root = colour_tree(tmp_path / "data", "cat", "dog")
    model_file = torchscript_file(tmp_path)
    pytester.makepyfile(test_cases="def test_case(case):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "ptqcore.plugin", "-p", "no:cacheprovider", "--ptq-models", str(model_file), "--ptq-dataset", "imagefolder",
        "--ptq-data-root", str(root), "--ptq-model-input-size", str(SIZE), "--ptq-calibration-size", "2",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = ("ERROR: model colours1000: the model predicts 1000 classes but the data set has 2 class folders"
                " (cat, dog)*; fix: *--ptq-class-map FILE*")
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str() and "passed" not in result.stdout.str()


def test_a_bad_class_map_file_is_an_option_error(pytester):
    pytester.path.joinpath("map.json").write_text('{"cat": 1, "dog": 1}')
    result = pytester.runpytest_subprocess("-p", "ptqcore.plugin", "--ptq-class-map", "map.json", "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ptq-class-map*two or more class folders on one output (cat and dog -> 1)*fix:*"])


@pytest.mark.parametrize("content, problem", [
    (None, "cannot be read"),
    (b"\xff\xfe{", "is not a JSON document"),
    (b'{"cat": 1,', "is not a JSON document"),
    (b"[" * 100_000, "is not a JSON document"),
    (b'{"cat": 1, "cat": 2}', "key 'cat' appears twice"),
    (b"[1, 2]", "holds a JSON array"),
    (b"null", "holds a JSON null"),
    (b"{}", "holds an empty object"),
    (b'{"cat": "285", "dog": true, "fox": -1, "owl": 2.0}', "4 value(s) are not output indices"),
    (b'{"cat": 3, "dog": 3, "owl": 4}', "two or more class folders on one output (cat and dog -> 3)"),
])
def test_every_bad_class_map_is_one_usage_error(tmp_path, content, problem):
    path = tmp_path / "map.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        load_class_map(path)
    assert problem in str(info.value) and "\n" not in str(info.value) and "; fix: " in str(info.value)


def test_a_directory_is_not_a_class_map(tmp_path):
    with pytest.raises(UsageError, match="cannot be read"):
        load_class_map(tmp_path)


@pytest.mark.parametrize("folders, width, class_map, problem", [
    (("cat", "dog"), 1000, {"cat": 1}, "has no output for 1 class folder(s): dog"),
    (("cat", "dog"), 10, {"cat": 1, "dog": 10}, "1 class folder(s) map beyond the model's 10 outputs"),
    (("3", "12"), 10, None, "map beyond the model's 10 outputs (folder names as output indices): 12 -> 12"),
    (("07", "7"), 10, None, "two or more class folders on one output (07 and 7 -> 7)"),
    (("n02124075", "n07920052"), 1001, None, "neither output indices (0285) nor ImageNet-1k WordNet ids"),
    (("n02124075", "n99999999"), 1000, None, "1 class folder(s) are not ImageNet-1k WordNet ids: n99999999"),
    (("3", "cat"), 10, None, "the model predicts 10 classes but the data set has 2 class folders (3, cat)"),
])
def test_folders_that_cannot_be_mapped_are_one_usage_error(folders, width, class_map, problem):
    with pytest.raises(UsageError) as info:
        folder_outputs(folders, width, class_map)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_a_map_beyond_the_width_stops_the_suite_naming_the_model(tmp_path):
    root = colour_tree(tmp_path / "data", "cat", "dog")
    path = tmp_path / "map.json"
    path.write_text('{"cat": 1, "dog": 20}')
    suite, model, _ = suite_for(torchscript_file(tmp_path, 20, red=1, blue=2), root, tmp_path, class_map=path)
    with pytest.raises(UsageError, match=f"model {model}: 1 class folder.* beyond the model's 20 outputs"):
        suite.check_output_widths()


@given(st.lists(st.integers(0, 999), min_size=2, max_size=30, unique=True), st.data())
def test_any_zero_padding_of_distinct_indices_maps_to_the_numbers(indices, data):
    folders = [str(i).zfill(data.draw(st.integers(1, 6))) for i in indices]
    outputs, rule = folder_outputs(folders, 1000)
    assert list(outputs) == indices and rule == "folder names as output indices"


def test_imagenet_wnids_are_the_1000_in_torchvisions_order():
    import torchvision

    wnids = imagenet1k_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # no download: metadata only
    for wnid, name in (("n01440764", "tench"), ("n02124075", "Egyptian cat"), ("n07920052", "espresso"),
                       ("n15075141", "toilet tissue")):
        assert categories[wnids.index(wnid)] == name


# -- finding 7's second half: nothing to train, so every image not used for calibration is evaluated --
@pytest.mark.parametrize("calibration_size, eval_size, evaluated", [(4, None, 5), (2, None, 7), (4, 3, 3)])
def test_a_model_file_is_evaluated_on_every_image_not_used_for_calibration(tmp_path, calibration_size, eval_size,
                                                                           evaluated):
    root = colour_tree(tmp_path / "data", f"0{RED}", f"0{BLUE}")  # 9 images
    suite, model, _ = suite_for(torchscript_file(tmp_path), root, tmp_path, calibration_sizes=(calibration_size,),
                                eval_size=eval_size)
    data = suite.dataset(model)
    calibration = data.calibration_subset(calibration_size)
    assert data.train == calibration and not set(calibration) & set(data.evaluation)
    assert len(data.evaluation) == evaluated
    if eval_size is None:
        assert sorted(calibration + data.evaluation) == list(range(9))
    assert scored(suite, model).labels.shape == (evaluated,)


def test_a_trained_model_keeps_its_held_out_split(tmp_path):
    root = colour_tree(tmp_path / "data", "cat", "dog")
    suite, _, _ = suite_for("tiny", root, tmp_path, calibration_sizes=(4,))
    data = suite.dataset("tiny_cnn")
    assert data.label_outputs is None and len(data.evaluation) == 2  # a quarter of 9 held out from training
    assert not set(data.evaluation) & set(data.train)


def test_too_few_images_for_calibration_and_evaluation_is_a_data_error(tmp_path):
    from ptqcore.errors import DataError

    root = colour_tree(tmp_path / "data", f"0{RED}", f"0{BLUE}")
    suite, _, _ = suite_for(torchscript_file(tmp_path), root, tmp_path, calibration_sizes=(9,))
    with pytest.raises(DataError, match="9 images, calibration and evaluation together"):
        suite.check_output_widths()


def test_an_onnx_file_with_a_symbolic_width_is_measured_by_one_run(tmp_path):
    import onnx

    from ptqcore.models.registry import file_output_width, spec_from_file

    path = onnx_file(tmp_path)
    graph = onnx.load(str(path))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"  # clears the fixed 1000
    onnx.save(graph, str(path))
    assert file_output_width(spec_from_file(path, SIZE), SIZE) == 1000
    with pytest.raises(UsageError, match=r"does not run on a 32x32 RGB input .*; fix: check --ptq-model-input-size"):
        file_output_width(spec_from_file(path, 32), 32)  # exported for 16x16

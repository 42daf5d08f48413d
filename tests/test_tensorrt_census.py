"""Engine census: layers per precision and reformat layers, from engine-inspector output.

The samples in ``tests/data/tensorrt/`` were written by hand in the layouts TensorRT 8.5 (detailed and names-only),
10.3 write, plus a hypothetical split datatype key (see the README there); counts worked out by hand.
"""

import json
from pathlib import Path

import pytest
from fakes.tensorrt_fakes import make_tensorrt

from ptqcore.backends.tensorrt import census_from_inspector_json, engine_census

DATA = Path(__file__).parent / "data" / "tensorrt"


def census(name):
    return census_from_inspector_json((DATA / name).read_text())


def test_int8_engine_of_tensorrt_8_5():
    result = census("inspector-8.5-int8-detailed.json")
    assert result == {
        "layers": 11,  # the NoOp reformat does not run
        "layers_by_precision": {"Int8": 6, "Half": 3, "Float": 2},
        "reformat_layers": 4,
        "reformat_layers_from_qdq": 3,
        "detailed": True,
    }
    assert list(result["layers_by_precision"]) == ["Int8", "Half", "Float"]  # most common first


def test_fp16_engine_of_tensorrt_10_3():
    result = census("inspector-10.3-fp16-detailed.json")
    assert result["layers_by_precision"] == {"Half": 7, "Float": 1}
    assert (result["layers"], result["reformat_layers"], result["reformat_layers_from_qdq"]) == (8, 2, 0)


def test_a_split_datatype_key_is_read():
    """Hypothetical layout (see the data README): no release is known to split the key."""
    result = census("inspector-split-datatype.json")
    assert result["layers_by_precision"] == {"Int8": 4, "Float": 2}
    assert (result["reformat_layers"], result["reformat_layers_from_qdq"], result["detailed"]) == (2, 2, True)


@pytest.mark.parametrize("key", ["Format/Datatype", "format/datatype", "FORMAT/DATATYPE", "Format/DataType"])
def test_the_combined_datatype_key_is_read_in_any_case(key):
    text = (DATA / "inspector-8.5-int8-detailed.json").read_text().replace('"Format/Datatype"', json.dumps(key))
    assert census_from_inspector_json(text)["layers_by_precision"] == {"Int8": 6, "Half": 3, "Float": 2}


@pytest.mark.parametrize("key", ["DataType", "Datatype", "datatype", "Data Type"])
def test_the_split_datatype_key_is_read_in_any_case(key):
    text = (DATA / "inspector-split-datatype.json").read_text().replace('"DataType"', json.dumps(key))
    assert census_from_inspector_json(text)["layers_by_precision"] == {"Int8": 4, "Float": 2}


def test_one_line_descriptions_read_either_datatype_key():
    line = ("Name: conv1, LayerType: CaskConvolution, Inputs: [ { Name: r, Format: Row major linear, {key}: Half }], "
            "ParameterType: Convolution")
    for key in ("Format/Datatype", "DataType", "format/datatype"):
        text = line.replace("{key}", key) if key != "Format/Datatype" else line.replace("Format: Row major linear, {key}: Half", "Format/Datatype: Half")
        assert census_from_inspector_json(text)["layers_by_precision"] == {"Half": 1}


def test_names_only_engine_information_counts_layers_and_reformat_copies():
    result = census("inspector-8.5-names-only.json")
    assert result == {"layers": 8, "layers_by_precision": {"Unknown": 8}, "reformat_layers": 2,
                      "reformat_layers_from_qdq": 0, "detailed": False}


def test_one_line_layer_descriptions_and_plain_text():
    reformat = (
        "Name: Reformatting CopyNode for Input Tensor 0 to conv1, LayerType: Reformat, Inputs: [ { Name: input, "
        "Location: Device, Dimensions: [1,3,224,224], Format/Datatype: Row major linear FP32 }], Outputs: [ { Name: r, "
        "Location: Device, Dimensions: [1,3,224,224], Format/Datatype: Channel major FP16 format where channel % 4 == 0 }], "
        "ParameterType: Reformat, Origin: REFORMAT"
    )
    conv = (
        "Name: conv1, LayerType: CaskConvolution, Inputs: [ { Name: r, Location: Device, Dimensions: [1,3,224,224], "
        "Format/Datatype: Channel major FP16 format where channel % 4 == 0 }], ParameterType: Convolution"
    )
    described = json.dumps({"Layers": [reformat, conv]})
    result = census_from_inspector_json(described)
    assert result["layers_by_precision"] == {"Float": 1, "Half": 1} and result["reformat_layers"] == 1
    text = "Layers:\nReformatting CopyNode for Input Tensor 0 to conv1\nconv1\nfc\nBindings:\ninput\nlogits\n"
    assert census_from_inspector_json(text)["layers"] == 3


def test_raw_control_characters_in_names_are_tolerated():
    text = '{"Layers": [{"Name": "a\x1eb", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": "Half"}]}]}'
    assert census_from_inspector_json(text)["layers_by_precision"] == {"Half": 1}


@pytest.mark.parametrize("words, expected", [
    ("Row major linear FP32", "Float"),
    ("Channel major INT8 format where channel % 16 == 0", "Int8"),
    ("Row major linear UInt8 format", "UInt8"),
    ("Row major linear BFloat16 format", "BFloat16"),
    ("Two wide channel vectorized row major FP16 format", "Half"),
    ("Row major linear Int32", "Int32"),
    ("Unknown format", "Unknown"),
])
def test_precision_words(words, expected):
    layer = {"Name": "x", "LayerType": "Shuffle", "Inputs": [{"Format/Datatype": words}]}
    assert census_from_inspector_json(json.dumps({"Layers": [layer]}))["layers_by_precision"] == {expected: 1}


def test_a_layer_precision_field_wins_over_its_formats():
    layer = {"Name": "x", "LayerType": "CaskConvolution", "Precision": "Int8",
             "Inputs": [{"Format/Datatype": "Row major linear FP32"}]}
    assert census_from_inspector_json(json.dumps({"Layers": [layer]}))["layers_by_precision"] == {"Int8": 1}


def test_output_without_a_layers_list_is_an_error():
    with pytest.raises(ValueError):
        census_from_inspector_json('{"Bindings": []}')


def test_engine_census_asks_the_inspector_for_json():
    trt = make_tensorrt("10.3.0.30")
    trt.inspector_text = (DATA / "inspector-10.3-fp16-detailed.json").read_text()
    engine = trt.ICudaEngine({"inputs": [], "outputs": [], "profile": {}, "ops": []})
    assert engine_census(engine, trt)["layers_by_precision"] == {"Half": 7, "Float": 1}
    assert trt.calls_named("get_engine_information") == [("get_engine_information", "JSON")]
